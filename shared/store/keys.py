"""Every Redis key tokentail uses, built in one place.

A session's keys share the hash tag `{<sid>}` so they live in one Redis Cluster slot and one Lua
script may touch them all.
"""

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionKeys:
    events: str  # stream of the session's events, entry id `<seq>-0`
    meta: str  # hash: session fields, `seq` (last id given out) and `active_run`
    runs: str  # hash: run id -> run record (JSON)
    lease: str  # string: token of the worker running the active run (the fence; its deadline is in `leases`)
    gone: str  # tombstone: outlives the session so an expired id answers 410, not 404
    pending: str  # list: runs queued behind the active one (multitask `enqueue`/`interrupt`)
    hooks: (
        str  # list: events its webhook has yet to deliver (shared/features/webhook_messages.py); outlives the session
    )
    steps: str  # hash: the active run's recorded steps (key -> JSON), their last seq and their total size
    # hash: each ended run's steps, as its lane's steps hash was at its end (run id -> the hash, flat, as a
    # JSON list), kept as long as the runs hash: what a fork inside the run replays (gateway/commands/branching.py)
    kept_steps: str
    steers: str  # list: steers waiting for the active run's agent (`Steer` records, JSON; lib/steers.lua)
    # hash: each steer's id -> `<run id> <seq of its steer.accepted>`, and each steered run's count
    # (`n:<run id>`) and characters (`c:<run id>`) of steers (lib/steers.lua); kept for the session's TTL
    steered: str
    # string: for the session of a chat id, the session the chat goes on in since it branched (a fork:
    # gateway/commands/branching.py); kept while the chat is used
    branch: str
    # list: for the session of a chat id, every session the chat went on in (forks, oldest first), which a
    # LangGraph thread's history lists as its branches (gateway/protocols/langgraph/checkpoints.py); kept as
    # `branch` is
    branches: str
    # hash: the meta of the lane whose run is this lane's run's parent (see `Keys.session`); a session's
    # own lane names its own meta (its runs have no parent)
    parent: str
    # hash: the session's own meta, which counts its child runs going (`children`): a session with one
    # going is active, whatever its own runs do (a cancelled parent's children end after it)
    root: str


LANE_SEPARATOR = "/"  # in a lane's id, between the session's id and the run ids down to the lane's run


def lane_of(parent_lane: str, child_run_id: str) -> str:
    """The lane of a child run of the run in `parent_lane` (see `Keys.session`)."""
    return f"{parent_lane}{LANE_SEPARATOR}{child_run_id}"


def parent_lane(lane: str) -> str:
    """The lane of the parent of a child's lane's run."""
    return lane.rsplit(LANE_SEPARATOR, 1)[0]


def lane_in(lane: str, session_id: str) -> str:
    """The lane of the same runs as `lane` in session `session_id` (a fork of its session's)."""
    _, separator, path = lane.partition(LANE_SEPARATOR)
    return f"{session_id}{separator}{path}"


def session_of(lane: str) -> str:
    """The session a lane is in: its id, for a session's own lane."""
    return lane.split(LANE_SEPARATOR, 1)[0]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def session(self, session_id: str) -> SessionKeys:
        """The keys of a session, or of a lane: where one run of it may be active. A session is its own
        lane, where its runs go one at a time; each child run (docs/subagents.md) has a lane of its
        own, `<parent's lane>/<child run id>` (`lane_of`), so that children run beside their parent and
        each other with the same scripts: a lane has its own meta (`active_run`, the lease's deadline,
        its job owed), lease, line, steps and steers, and shares the session's stream (one cursor
        space), runs hash (one tree of records), tombstone, webhook list, steer ids and branch. All in
        the session's hash tag: one Redis Cluster slot, and one script may touch them all."""
        session, _, path = session_id.partition(LANE_SEPARATOR)
        base = f"{self.prefix}:{{{session}}}"
        lane = f"{base}:run:{path.rsplit(LANE_SEPARATOR, 1)[-1]}" if path else base
        parent = parent_lane(session_id) if path else session_id
        return SessionKeys(
            events=f"{base}:events",
            meta=f"{lane}:meta",
            runs=f"{base}:runs",
            lease=f"{lane}:lease",
            gone=f"{base}:gone",
            pending=f"{lane}:pending",
            hooks=f"{base}:hooks",
            steps=f"{lane}:steps",
            kept_steps=f"{base}:kept-steps",
            steers=f"{lane}:steers",
            steered=f"{base}:steered",
            branch=f"{base}:branch",
            branches=f"{base}:branches",
            parent=f"{self.session(parent).meta if path else lane + ':meta'}",
            root=f"{base}:meta",
        )

    @property
    def queue(self) -> str:
        """arq queue (sorted set of job ids); also the stem of arq's health-check key."""
        return f"{self.prefix}:queue"

    @property
    def admission(self) -> str:
        """Prefix of the admission keys, on the queue's Redis (lib/admission.lua, which names them
        from it as these methods do; shared/features/admission.py)."""
        return f"{self.prefix}:admission:"

    @property
    def admission_tenants(self) -> str:
        """Set: the tenants whose runs held slots (their running hashes, for the audit and metrics)."""
        return f"{self.admission}tenants"

    @property
    def admission_parked(self) -> str:
        """Sorted set: the tenants at their cap with runs waiting -> their pass (lib/admission.lua)."""
        return f"{self.admission}parked"

    def tenant_line(self, tenant: str) -> str:
        """Sorted set: the jobs of the tenant's runs waiting for their turn (first jobs, children, and
        resumes after answers or children) -> their place (ms: when the run first queued; a child, its
        tree's root's)."""
        return f"{self.admission}line:{tenant}"

    def tenant_running(self, tenant: str, user: str = "") -> str:
        """Hash: the tenant's runs holding a slot, `<sid> <run id>` -> `<job id> <user>`; with `user` (a
        digest, as jobs name it), that user's alone, -> `<job id>` (lib/admission.lua's running_key)."""
        return f"{self.admission}running:{tenant}:{user}" if user else f"{self.admission}running:{tenant}"

    def spawns(self, tenant: str, minute: int) -> str:
        """String, on the sessions' Redis: how many child runs the tenant's runs started in that minute
        (since the epoch), for its bound (worker/run/children.py, shared/store/tenant_counts.py); kept two minutes."""
        return f"{self.prefix}:tenant:{{{tenant}}}:spawns:{minute}"

    def joined_count(self, writer_id: str, tag: str | None = None) -> str:
        """String: how many joined append calls a worker process (`writer_id`, its own) has sent, on
        the sessions' Redis (worker/writes/appends.py `JoinCounter`); on a Redis Cluster, one per slot
        it appends to, in the slot of hash tag `tag`."""
        return f"{self.prefix}:joined-count:{writer_id}" + ("" if tag is None else f":{{{tag}}}")

    @property
    def lease_checks(self) -> str:
        """Sorted set, on the queue's Redis: what reapers look at and when (ms), a session id (its
        run's lease) or `<sid> <intent>` (a job its outbox may hold). See shared/store/lease_index.py."""
        return f"{self.prefix}:lease-checks"

    @property
    def webhook_checks(self) -> str:
        """Sorted set, on the queue's Redis: the sessions with webhook deliveries to look at, and when
        (ms). See shared/store/webhook_index.py."""
        return f"{self.prefix}:webhook-checks"

    @property
    def archive_checks(self) -> str:
        """Sorted set, on the sessions' Redis: the sessions with events the archive may not have yet,
        and when to look (ms). See worker/process/archiver.py."""
        return f"{self.prefix}:archive-checks"

    def client_run(self, tenant: str, client_run_id: str, chat: str = "") -> str:
        """String, on the sessions' Redis: `<session id> <run id> <thread id>` of the run an AG-UI client posted
        as run `client_run_id` (hashed: any text a client sends), in the chat whose own session is `chat`
        (or in the tenant's, '': the first of its chats to use the id), for TanStack AI's `joinRun`, which
        names nothing else (shared/store/client_indexes.py). Kept as long as a chat's branch."""
        named = f"{chat}\n{client_run_id}" if chat else client_run_id
        digest = hashlib.sha256(named.encode()).hexdigest()[:32]
        return f"{self.prefix}:tenant:{{{tenant}}}:client-run:{digest}"

    def tenant_webhook(self, tenant: str) -> str:
        """Hash: the tenant's webhook `url` and signing `secret`."""
        return f"{self.prefix}:tenant:{{{tenant}}}:webhook"

    @property
    def agents(self) -> str:
        """Hash: agent name -> what it says about itself (JSON), published by the workers as they
        start (shared/features/agent_catalog.py)."""
        return f"{self.prefix}:agents"

    def task_push(self, session_id: str) -> str:
        """Hash, beside the session's keys (its hash tag): its tasks' push configs, `<run id> <config id>` ->
        JSON (A2A's: shared/features/a2a_push.py; named for it, as the first version stored it)."""
        return f"{self.prefix}:{{{session_id}}}:a2a-push"

    def a2a_tasks(self, tenant: str, agent: str) -> str:
        """Sorted set: the task ids a tenant started through A2A with an agent -> when (ms); its
        newest only (shared/store/client_indexes.py `TaskIndex`)."""
        return f"{self.prefix}:tenant:{{{tenant}}}:a2a-tasks:{agent}"

    @property
    def admin_runs(self) -> str:
        """Sorted set, on the sessions' Redis: every run queued, `<sid> <run id>` -> when (µs), the newest
        kept (shared/store/run_index.py: what the console lists)."""
        return f"{self.prefix}:{{admin}}:runs"

    def tenant_admin_runs(self, tenant: str) -> str:
        """Sorted set, as `admin_runs`: the tenant's runs. (The index's keys share a hash tag: its script
        writes them together.)"""
        return f"{self.prefix}:{{admin}}:runs:{tenant}"

    def admin_troubled(self, tenant: str | None = None) -> str:
        """Sorted set, on the sessions' Redis: the runs that ended failed or taken over (every tenant's, or
        `tenant`'s), `<sid> <run id>` -> when each ended (µs): the overview's list of runs in trouble, which
        runs queued cannot push out (shared/store/lua/lib/run_index.lua writes it where runs end)."""
        return f"{self.prefix}:{{admin}}:troubled" + (f":{tenant}" if tenant else "")

    def admin_run(self, run_id: str) -> str:
        """String, on the sessions' Redis: the session of a run the index lists (a search by run id)."""
        return f"{self.prefix}:{{admin}}:run:{run_id}"

    def acp(self, connection_id: str) -> str:
        """The stem of an ACP connection's keys (shared/features/acp_connections.py), in its own hash tag:
        `:conn` (hash: its record, and each session's place), `:out` (stream: what it is sent that is not
        a session's), `:prompts` (hash: run id -> the JSON-RPC id of the prompt that queued it)."""
        return f"{self.prefix}:{{acp:{connection_id}}}"

    def admin_forks(self, session_id: str, run_id: str) -> str:
        """Sorted set, on the sessions' Redis: the forks made inside a run (time travel), `<fork's sid>
        <event id>` -> when (µs), the newest kept: the console shows them on the run's page."""
        return f"{self.prefix}:{{admin}}:forks:{session_id}:{run_id}"

    @property
    def workers(self) -> str:
        """Hash, on the queue's Redis: worker id -> its last heartbeat (JSON: shared/features/workers.py)."""
        return f"{self.prefix}:workers"

    @property
    def probe(self) -> str:
        """A short-lived key written to find out whether Redis accepts writes (readiness, reapers)."""
        return f"{self.prefix}:probe"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel carrying the run ids to cancel, to whichever worker runs them."""
        return f"{self.prefix}:cancel"

    @property
    def steer_channel(self) -> str:
        """Pub/sub channel carrying the ids of runs just steered, to whichever worker runs them."""
        return f"{self.prefix}:steer"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel that tells idle workers a job was queued, so none waits for its next poll."""
        return f"{self.prefix}:wake"

    def tenant_runs(self, tenant: str, window: int) -> str:
        """Counter of the runs and sessions a tenant created in one minute-long window."""
        return f"{self.prefix}:tenant:{{{tenant}}}:runs:{window}"

    def tenant_fork_bytes(self, tenant: str, window: int) -> str:
        """Counter of the bytes a tenant's forks copied in one hour-long window."""
        return f"{self.prefix}:tenant:{{{tenant}}}:fork-bytes:{window}"

    def tenant_streams(self, tenant: str) -> str:
        """Sorted set: the tenant's open streams (gateway-made ids) -> when each slot lapses (ms)."""
        return f"{self.prefix}:tenant:{{{tenant}}}:streams"

    def token_streams(self, tenant: str, session_id: str) -> str:
        """Sorted set, as `tenant_streams`: those of the tenant's streams a stream token of session
        `session_id` opened (one browser's share)."""
        return f"{self.prefix}:tenant:{{{tenant}}}:streams:{session_id}"

    @staticmethod
    def arq_job(job_id: str) -> str:
        # arq's own key layout (arq.constants.job_key_prefix); arq 0.28 does not namespace it.
        return f"arq:job:{job_id}"
