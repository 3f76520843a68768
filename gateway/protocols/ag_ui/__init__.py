"""AG-UI (CopilotKit, `@ag-ui/client`, TanStack AI):

render        AG-UI events, from a session's stored events, each frame with an id to resume after
messages      a request's messages: their texts, and the conversation they show
routes        the endpoints HttpAgent and TanStack AI's fetchServerSentEvents are pointed at
capabilities  the capabilities document: resumable streams and push notifications, and how each works
client_runs   the runs AG-UI clients posted, by their own run id (TanStack AI's joinRun)
"""
