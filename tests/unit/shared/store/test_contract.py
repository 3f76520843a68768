"""A script's contract (shared/store/scripts/contract.py, reply.py): what Python packs is what the Lua side reads
by name, and what the Lua side replies by name is what Python reads."""

import itertools
import json
import re
from dataclasses import dataclass, fields, is_dataclass
from importlib import resources
from typing import Any

import fakeredis
import pytest
from lupa import lua51  # type: ignore[import-untyped]

from tokentail.shared.store.scripts import checks, children, limits, pickup, runs, sessions
from tokentail.shared.store.scripts.checks import Claimed
from tokentail.shared.store.scripts.contract import Effect, Packer, Script, Topology, lib_source
from tokentail.shared.store.scripts.pickup import ArqKeys, ArqPrefixes, Claim, ClaimedJob, Finish, FinishJobs
from tokentail.shared.store.scripts.reply import Reply
from tokentail.shared.store.scripts.runs import (
    Append,
    AppendEvents,
    AppendKeys,
    AppendShared,
    Ask,
    IndexArgs,
    Look,
    Queued,
    QueueOutcome,
    QueueReply,
    Requeue,
    RunKeys,
    SessionArgs,
)
from tokentail.shared.store.scripts.sessions import ForkSession

TOPOLOGIES = [Topology(*flags) for flags in itertools.product((False, True), repeat=3)]
CONTRACTS = [
    value
    for module in (runs, sessions, checks, limits, pickup, children)
    for value in vars(module).values()
    if isinstance(value, type) and issubclass(value, Script) and value is not Script
]

# The bindings, then what they bound, as JSON (instead of the script's own body).
ECHO = """
local bound = {s = s, joined_count = joined_count}
if each_call then
  bound.calls = {}
  for i, k, a in each_call do bound.calls[i] = cjson.encode({k = k, a = a}) end  -- (its tables are reused)
else
  bound.k, bound.a = k, a
end
return cjson.encode(bound)
"""


def _run_keys() -> RunKeys:
    session = ["meta", "runs", "events", "lease", "gone", "pending", "hooks", "steps", "steers", "steered"]
    session += ["parent", "root", "kept_steps"]
    keys = {name: f"key:{name}" for name in session}
    queue_keys = {"queue": "queue", "index": "index", "hook_index": "hook_index"}
    return RunKeys(**keys, **queue_keys, archive="archive", troubled="troubled")


def _args() -> SessionArgs:
    return SessionArgs("sid", 1000, 60, 600, 86400000, "wake", "arq:job:", "run_agent", 5000, 10000, "tt:admission:")


def _echoed(script: Script[Any], topology: Topology) -> Any:
    source = type(script).lua_bindings(topology) + ECHO
    server = fakeredis.FakeRedis()
    reply: Any = server.eval(source, len(script.keys(topology)), *script.keys(topology), *script.args())
    return json.loads(reply)


def _as_lua(value: Any) -> Any:
    """A Python value as the bindings give it back (ARGV are strings)."""
    if is_dataclass(value):
        return {f.name: _as_lua(getattr(value, f.name)) for f in fields(value) if getattr(value, f.name) is not None}
    if isinstance(value, list):
        return [str(item) for item in value]
    return str(value)


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=str)
def test_a_script_reads_by_name_what_its_caller_packed(topology: Topology) -> None:
    asked = Ask(_run_keys(), _args(), "r1", "token", "[]", 7, ["{}", '{"a":1}'], ["q1", "q2"], ["", "9"], ["", "null"])
    bound = _echoed(asked, topology)
    keys = dict(_as_lua(asked.k))
    if topology.split_queue:
        keys = {name: value for name, value in keys.items() if name not in ("queue", "index", "hook_index")}
    if not topology.archive:
        keys.pop("archive")
    if topology.cluster:
        keys.pop("troubled")
    assert bound["k"] == keys
    assert bound["s"] == _as_lua(asked.s)
    assert bound["a"] == {
        name: _as_lua(getattr(asked, name))
        for name in ("run_id", "lease_token", "asked", "expect", "events", "input_ids", "deadlines", "defaults")
    }


def test_lists_in_the_middle_are_counted_and_the_last_one_takes_the_rest() -> None:
    topology = Topology(archive=True)
    events = [1, "t", "d", "ts", 2, "t", "d", "ts"]
    fork = ForkSession(
        _run_keys(),
        _args(),
        IndexArgs.none(),
        ["f", "v"],
        [],
        ["r1", "[]"],
        events,
        "r2",
        2,
        "1",
        "j",
        "",
        [],
        ["r3"],
        ["c1", "s/c1", "m", "st", "c1.j", "[]"],
    )
    bound = _echoed(fork, topology)
    assert bound["k"]["archive"] == "archive" and bound["k"]["kept_steps"] == "key:kept_steps"
    assert bound["a"]["fields"] == ["f", "v"] and bound["a"].get("runs", {}) in ([], {})  # cjson: {} for an empty table
    assert bound["a"]["kept_steps"] == ["r1", "[]"]
    assert bound["a"]["events"] == ["1", "t", "d", "ts", "2", "t", "d", "ts"]
    assert (bound["a"]["run_id"], bound["a"]["at"], bound["a"]["pending"]) == ("r2", "2", ["r3"])
    assert bound["a"]["children"] == ["c1", "s/c1", "m", "st", "c1.j", "[]"]  # the last list: the rest
    assert fork.queued_lanes() == ("s/c1",)
    assert bound["a"].get("steps", {}) in ([], {})


def test_a_joinable_script_binds_each_joined_call() -> None:
    # Each call's tables are filled again for the next: a shorter list keeps nothing of a longer one.
    topology = Topology()
    appends = [
        AppendEvents(AppendShared(1000), AppendKeys(f"m{i}", f"e{i}", f"l{i}"), f"r{i}", "t", i, ["x", "y"] * i)
        for i in (2, 1)
    ]
    packer = Packer.of(AppendEvents, topology)
    keys = [key for append in appends for key in packer.keys(append)]
    shared = AppendEvents.shared_args()
    args = packer.args(appends[0]) + packer.args(appends[1])[shared:]  # the shared arguments once (pipeline.py)
    source = AppendEvents.lua_bindings(topology) + ECHO
    reply: Any = fakeredis.FakeRedis().eval(source, len(keys), *keys, *args)
    bound = json.loads(reply)
    assert bound["s"] == {"maxlen": "1000", "count": ""} and "joined_count" not in bound
    # A joined call's count key comes first: bound apart, the calls' keys as before.
    counted: Any = fakeredis.FakeRedis().eval(source, len(keys) + 1, "count-key", *keys, *args)
    assert json.loads(counted)["joined_count"] == "count-key"
    assert [json.loads(call)["k"] for call in json.loads(counted)["calls"]][1] == {
        "meta": "m1",
        "events": "e1",
        "lease": "l1",
    }
    calls = [json.loads(call) for call in bound["calls"]]
    assert [call["k"] for call in calls] == [
        {"meta": "m2", "events": "e2", "lease": "l2"},
        {"meta": "m1", "events": "e1", "lease": "l1"},
    ]
    assert [call["a"]["events"] for call in calls] == [["x", "y", "x", "y"], ["x", "y"]]


def test_arq_job_finishes_go_six_values_each_in_the_order_finish_jobs_lua_reads() -> None:
    finishes = [Finish("j1", True, b"result", 60_000), Finish("j2", False, incr_score=5, keep_in_progress_ms=100)]
    prefixes = ArqPrefixes("ip:", "job:", "retry:", "result:")
    finish = FinishJobs.of(ArqKeys("queue", "aborts", "index"), prefixes, "adm:", "wake", finishes, ["j0"], ["s @j"])
    bound = _echoed(finish, Topology())
    assert bound["k"] == {"queue": "queue", "aborts": "aborts", "index": "index"}
    assert (bound["a"]["admission"], bound["a"]["wake_channel"]) == ("adm:", "wake")
    assert (bound["a"]["taken"], bound["a"]["dropped"]) == (["j0"], ["s @j"])
    assert bound["a"]["finishes"] == ["j1", "1", "result", "60000", "", "", "j2", "0", "", "", "5", "100"]


def test_a_key_the_topology_needs_cannot_be_left_out() -> None:
    # no queue keys, nor the index of runs in trouble: fine with the queue apart on a Redis Cluster only
    keys = RunKeys("m", "r", "e", "l", "g", "p", "h", "s", "st", "sd", "pa", "ro", "ks")
    append = Append(keys, _args(), "r", "t", "id", "", "", "", 0, [])
    assert len(append.keys(Topology(cluster=True, split_queue=True))) == 13
    with pytest.raises(ValueError, match="a key its topology needs is missing"):
        append.keys(Topology(split_queue=True))
    with pytest.raises(ValueError, match="a key its topology needs is missing"):
        append.keys(Topology())


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda contract: contract.__name__)
def test_every_script_compiles_with_its_bindings_in_every_topology(contract: type[Script[Any]]) -> None:
    load = lua51.LuaRuntime().eval("loadstring")  # Redis's Lua 5.1: compiles, runs nothing
    for topology in TOPOLOGIES:
        compiled, error = load(contract.lua_source(topology)), None
        if not compiled:
            _, error = load(contract.lua_source(topology))
        assert compiled, error


def test_argument_groups_are_declared_before_the_other_arguments() -> None:
    @dataclass(slots=True)
    class Misordered(Script[None]):
        SOURCE = "count"
        k: AppendKeys
        first: str
        s: AppendShared

    with pytest.raises(TypeError, match="argument groups come before"):
        Misordered(AppendKeys("m", "e", "l"), "x", AppendShared(1)).args()


def _replied(declared: Reply[Any], lua: str) -> Any:
    """What a script whose body is `lua` replies, through Redis's conversion, parsed as declared."""
    return declared.parse(fakeredis.FakeRedis().eval(declared.lua() + "\n" + lua, 0))


def test_a_reply_is_built_and_read_by_name_and_a_nil_field_cuts_off_none_after_it() -> None:
    queued = runs.QueueRun.REPLY
    assert queued is not None
    assert _replied(queued, "return reply.ok{seq = 7, queued = 'pending', ended = {'a', 'b'}}") == QueueReply(
        QueueOutcome.OK, 7, Queued.PENDING, ended=(b"a", b"b")
    )
    assert _replied(queued, "return reply.ok{queued = 'started'}") == QueueReply(QueueOutcome.OK, None, Queued.STARTED)
    assert _replied(queued, "return reply.conflict{active_run = 'r1'}") == QueueReply(
        QueueOutcome.CONFLICT, active_run="r1"
    )
    assert _replied(queued, "return reply.gone{}") == QueueReply(QueueOutcome.GONE)


def test_a_bool_field_is_true_only_when_the_script_said_true() -> None:
    requeue = runs.RequeueRun.REPLY
    assert requeue is not None
    pushed = "return reply.dispatch{dispatch = 'j r', look_again_at = 5, pushed = %s}"
    assert _replied(requeue, pushed % "true") == Look(Requeue.PUSHED, 5, b"j r", pushed=True)
    assert _replied(requeue, pushed % "false").pushed is False
    assert _replied(requeue, "return reply.cleared{expired = 'record'}") == Look(Requeue.CLEARED, expired=b"record")


def test_an_untagged_reply_takes_its_fields_in_order_and_a_list_of_records_the_rest() -> None:
    claim = pickup.ClaimJobs.REPLY
    assert claim is not None
    jobs = "{job_id = 'j1', score = '1700', job_try = 2, aborted = true}, {job_id = 'j2', score = '1800', job_try = 1}"
    assert _replied(claim, f"return reply.value{{looked = 9, jobs = {{{jobs}}}}}") == Claim(
        [ClaimedJob("j1", 1700, None, 2, True), ClaimedJob("j2", 1800, None, 1, False)], 9
    )
    assert _replied(claim, "return reply.value{looked = 0, jobs = {}}") == Claim([], 0)
    checked = checks.ClaimChecks.REPLY
    assert checked is not None
    assert _replied(checked, "return reply.value{score = '12', members = {'a', 'b'}}") == Claimed("12", ["a", "b"])


def test_a_reply_declaration_names_every_outcome_and_only_those() -> None:
    with pytest.raises(TypeError, match="outcomes declared and its outcome's values differ: {'cancel'}"):
        Reply(runs.AskReply, waiting=("seq",))
    with pytest.raises(TypeError, match="a list takes the rest of the reply, and so comes last"):
        Reply.of(Claim, "jobs", "looked")


@pytest.mark.parametrize("contract", [c for c in CONTRACTS if c.REPLY], ids=lambda contract: contract.__name__)
def test_a_script_with_a_declared_reply_builds_it_only_with_its_constructors(contract: type[Script[Any]]) -> None:
    body = resources.files("tokentail.shared.store.lua").joinpath(f"{contract.SOURCE}.lua").read_text()
    assert contract.REPLY is not None
    declared = set(contract.REPLY.constructors())
    used = set(re.findall(r"\breply\.(\w+)", body))
    assert used and used <= declared, f"{contract.SOURCE}.lua replies {used - declared} it does not declare"
    assert not re.search(r"return \{'", body), f"{contract.SOURCE}.lua writes a reply by position"


def _lib_functions() -> dict[str, str]:
    """The shared helpers' functions (lib/, joined), each name with its body."""
    lib = lib_source()
    parts = re.split(r"^local function (\w+)\(", lib, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _with_what_it_calls(body: str, lib: dict[str, str]) -> str:
    """A script's body and the bodies of the shared helpers it calls, however deep."""
    seen: set[str] = set()
    todo = [body]
    while todo:
        for name in re.findall(r"\b(\w+)\(", todo.pop()):
            if name in lib and name not in seen:
                seen.add(name)
                todo.append(lib[name])
    return "\n".join([body, *(lib[name] for name in sorted(seen))])


def _takes_the_lease(lua: str) -> bool:
    return bool(re.search(r"'DEL', [^)]*\bk\.lease\b", lua))


def _fences(lua: str) -> bool:
    """`fence(k)`, or the stream deleted (append_at.lua's NOMKSTREAM refuses a stale append then)."""
    return "fence(k)" in lua or bool(re.search(r"'DEL', [^)]*\bk\.events\b", lua))


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda contract: contract.__name__)
def test_a_script_that_takes_a_lease_away_fences_its_stream(contract: type[Script[Any]]) -> None:
    # The per-token path checks no lease (append_at.lua): the stream refuses a stale worker's append only
    # because every script that may take the lease from a worker still running fences it (lib/seqs.lua).
    # Ending one's own run, or asking, under one's own lease (check_holder) takes it from nobody.
    lib = _lib_functions()
    body = resources.files("tokentail.shared.store.lua").joinpath(f"{contract.SOURCE}.lua").read_text()
    lua = _with_what_it_calls(body, lib)
    declared = Effect.TAKES_LEASE in contract.EFFECTS
    if declared:
        assert _fences(lua), f"{contract.SOURCE}.lua takes leases and does not fence (lib/events.lua's fence)"
    elif _takes_the_lease(lua):
        assert "check_holder(" in lua, f"{contract.SOURCE}.lua takes a lease: declare Effect.TAKES_LEASE and fence"


def test_the_fence_check_finds_a_script_that_forgets_to_fence() -> None:
    lib = _lib_functions()
    requeue = resources.files("tokentail.shared.store.lua").joinpath("requeue_run.lua").read_text()
    assert _fences(_with_what_it_calls(requeue, lib))
    assert not _fences(_with_what_it_calls(requeue.replace("fence(k)", ""), lib))
    assert _takes_the_lease(requeue) and "check_holder(" not in _with_what_it_calls(requeue, lib)
