"""AG-UI (CopilotKit, `@ag-ui/client`, TanStack AI). May import the gateway's core (access/, live/,
reducer/, reading/, commands/, deps, schemas, errors) and shared/; never another protocol.

render         AG-UI events, from a session's stored events, each frame with an id to resume after
open_messages  the text and reasoning messages open in the client's AG-UI run
subagents      a session's sub-agent tree as AG-UI's subagents: each child run one invocation
messages       a request's messages: their texts, and the conversation they show
tanstack       TanStack AI's interrupt binding: what lets its client answer an interrupt
capabilities   the capabilities document: resumable streams and push notifications, and how each works
client_runs    the runs AG-UI clients posted, by their own run id (TanStack AI's joinRun)
routes         the package's router: the endpoints HttpAgent and TanStack AI's fetchServerSentEvents call
"""
