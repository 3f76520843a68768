"""A LangGraph graph that asks before it acts (`interrupt`), offline: no model, for the adapter's tests."""

from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt

from tokentail.frameworks.langgraph import langgraph_agent


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def draft(state: State) -> dict[str, Any]:
    return {"messages": [AIMessage("Drafted the email. ")]}


def approve(state: State) -> dict[str, Any]:
    answer = interrupt({"prompt": "Send the email?", "kind": "approval"})
    return {"messages": [AIMessage("Sent." if answer["approved"] else "Not sent.")]}


def _graph() -> Any:
    graph = StateGraph(State)
    graph.add_node("draft", draft)
    graph.add_node("approve", approve)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "approve")
    graph.add_edge("approve", END)
    return graph.compile()


agent = langgraph_agent(_graph())


def approve_sending(state: State) -> dict[str, Any]:
    answer = interrupt({"prompt": "Send the email?", "kind": "approval"})
    return {"messages": [AIMessage("Sent. " if answer["approved"] else "Not sent. ")]}


def approve_archiving(state: State) -> dict[str, Any]:
    answer = interrupt({"prompt": "Archive the thread?", "kind": "approval"})
    return {"messages": [AIMessage("Archived." if answer["approved"] else "Not archived.")]}


def _parallel_graph() -> Any:
    """Two nodes that interrupt in the same step: two questions open at once."""
    graph = StateGraph(State)
    graph.add_node("draft", draft)
    graph.add_node("approve_sending", approve_sending)
    graph.add_node("approve_archiving", approve_archiving)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "approve_sending")
    graph.add_edge("draft", "approve_archiving")
    graph.add_edge("approve_sending", END)
    graph.add_edge("approve_archiving", END)
    return graph.compile()


parallel_agent = langgraph_agent(_parallel_graph())
