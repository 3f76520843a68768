"""shared/vocabulary/records.py: a session's runs as a chat's transcript."""

from tokentail.shared.vocabulary.records import RunRecord, transcript


def _run(run_id: str, status: str, output: str | None = None) -> RunRecord:
    return RunRecord.model_validate(
        {"run_id": run_id, "input": f"q{run_id}", "model": "scripted", "status": status, "output": output}
    )


def test_transcript_pairs_inputs_with_answers_and_shows_partial_text_of_the_active_run() -> None:
    runs = [_run("1", "completed", "a1"), _run("2", "failed"), _run("3", "running")]
    turns = transcript(runs, partial_text="so far")
    assert [(t.role, t.content, t.status) for t in turns] == [
        ("user", "q1", None),
        ("assistant", "a1", "completed"),
        ("user", "q2", None),
        ("assistant", "", "failed"),
        ("user", "q3", None),
        ("assistant", "so far", "running"),
    ]


def test_a_queued_run_has_no_answer_yet() -> None:
    assert [t.role for t in transcript([_run("1", "queued")])] == ["user"]
