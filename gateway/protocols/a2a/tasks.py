"""What an A2A request asks of tokentail's tasks (gateway/protocols/a2a/routes.py serves it): a message's input,
the answer it gives to a task's question (the index that lists a tenant's A2A tasks is the store's:
shared/store/client_indexes.py).

A message's text parts, joined, are the run's input for an agent that takes text; an agent that
declares its own arguments (`input_schema`) takes one data part, an object, checked against it. A
message on a task that waits for input answers its question: its data part if it has one (a choice,
a JSON answer), else its text.
"""

from typing import Any

from a2a.types.a2a_pb2 import Message
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

from tokentail.gateway.commands.tasks import Task
from tokentail.shared.features.agent_catalog import AgentInfo
from tokentail.shared.vocabulary.errors import InvalidInput


def _texts(message: Message) -> list[str]:
    return [part.text for part in message.parts if part.WhichOneof("content") == "text"]


def _data(message: Message) -> list[Any]:
    return [_numbers(MessageToDict(part)["data"]) for part in message.parts if part.WhichOneof("content") == "data"]


def _numbers(value: Any) -> Any:
    """A data part's JSON with its whole numbers as integers: protobuf's Struct, which carries it, has
    only doubles, and `{"a": 2}` reaches an agent as the client wrote it, not as `{"a": 2.0}`."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers(item) for item in value]
    return value


def message_input(agent: AgentInfo, message: Message) -> str:
    """The input of the run a message starts."""
    if not message.parts:
        raise InvalidInput("message.parts: a message to an agent has a text part (or, for its arguments, a data part)")
    data = _data(message)
    if agent.takes_text:
        if data and not _texts(message):
            arguments = data[0] if len(data) == 1 and isinstance(data[0], dict) else None
            if arguments is None:
                raise InvalidInput(f"agent {agent.name!r} takes text: send a text part")
            return agent.input_text(arguments)
        return agent.input_text({"input": "\n".join(_texts(message))})
    if len(data) != 1 or not isinstance(data[0], dict):
        raise InvalidInput(
            f"agent {agent.name!r} takes arguments: send them as one data part, an object (its agent card's skill "
            "says what it takes)"
        )
    return agent.input_text(data[0])


def message_answer(message: Message) -> Any:
    """The answer a message gives to the question its task waits on."""
    data = _data(message)
    if data:
        return data[0]
    texts = _texts(message)
    if not texts:
        raise InvalidInput("message.parts: an answer is a text part or a data part")
    return "\n".join(texts)


def answered_question(task: Task, message: Message) -> str:
    """The input id of the question a message on a task answers: the one its metadata's `inputId`
    names (as each question's status message shows it), or the only one open. A task that waits on
    several questions (asked at once) needs the name."""
    value = message.metadata.fields.get("inputId") if message.HasField("metadata") else None
    if value is not None and value.WhichOneof("kind") == "string_value":
        return str(value.string_value)
    open_ids = [question.input_id for question in task.questions]
    if len(open_ids) > 1:
        raise InvalidInput(
            f"task {task.id!r} waits on several questions ({', '.join(open_ids)}): "
            "name the one this message answers in its metadata (inputId)"
        )
    return open_ids[0]
