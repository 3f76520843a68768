"""A session's events to one client, read through the live reading (gateway/live/: the hub) and
rendered through the reducer (gateway/reducer/). May import the gateway's access/, metrics, protocol
(the direct write its server offers), live/ and reducer/, and shared/; never a protocol of others.

feed             one client's catch-up then live tail, with gaps (`EventFeed`, `Batch`)
feed_observer    what is told of a feed beside its events: metrics, its span, first deltas
connection_span  the span of one client's connection to a session's stream
snapshot         compacted catch-up for a client far behind (`?catch_up=snapshot`)
streams          opening a session's stream for one client in an encoding (`Streams.open`)
response         writing one client's stream on one HTTP response (`EventStreamResponse`)
run_filter       one run of a session, with `subtree` its descendants, on the session's stream
settling         waiting for a run to settle: to end, or to stop at a question
renderer         the base every protocol of others renders the reducer's operations with
shutdown         ends every open stream cleanly when the gateway stops
"""
