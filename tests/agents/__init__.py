"""Agent modules of the tests, written as a user writes agents. Workers load them by name (in
TOKENTAIL_AGENTS or a Settings' `agents`: "tests.agents.slow_agent:slow_tool_agent"), in this process
or in the gateway, worker and `tokentail dev` processes the tests start: a module moved or renamed
here must be renamed in those strings too. One agent lives elsewhere: `held`, the scripted answer held
at its gate halfway, is the gates' own ("tests.support.gates:held", beside `gate`)."""
