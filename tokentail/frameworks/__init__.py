"""Adapters that run agents written with a framework in a tokentail worker, unchanged: one module
per framework, each needing its optional extra (`pip install tokentail[langgraph]`, ...). Each
wraps the user's object and returns a tokentail agent (an async function of a `RunContext`),
registered like any other (`TOKENTAIL_AGENTS`). They use the frameworks' async APIs, so that a
cancel reaches the framework's model stream and stops the token spend. See docs/agents.md."""
