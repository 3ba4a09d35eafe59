"""The emitters shared by the socket-family collectors: a tally's rows become per-state series, queue histograms,
port-group and cgroup series. Rows are [socket count, receive queue, send queue, memory values...]."""

from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from prometheus_client.utils import floatToGoString

from .. import metrics as m
from ..diag.tally import Tally
from .base import Samples
from .names import NEVER_REPORTED, state_name
from .options import Options

# (labels, state table or None for a family without states, state number) of a tally key
Split = Callable[[tuple], Tuple[tuple, Optional[dict], int]]


def by_state_name(rows: Iterable[Tuple[int, Sequence[int]]], state_names: Optional[dict], width: int = 3,
                  fill: Iterable[str] = ()) -> Dict[str, list]:
    """Fold (state number, row) pairs into state name -> sums of the first width values, with a zero row for every
    state in fill (so that dashboards and alerts see no gaps). A family without states (None) has one row, ""."""
    counts = {name: [0] * width for name in fill}
    for state, row in rows:
        name = "" if state_names is None else state_name(state_names, state)
        total = counts.setdefault(name, [0] * width)
        for i, value in enumerate(row[:width]):
            total[i] += value
    return counts


def fill_for(options: Options, state_names: Optional[dict], core: bool) -> Iterable[str]:
    """The states that get a series even with no socket in them: every known one in the full profile; in the
    default one those of the families alerts and dashboards read state by state (core: tcp, udp, unix), but not
    the states sock_diag never reports."""
    if state_names is None:
        return ("",) if options.full or core else ()
    if options.full:
        return state_names.values()
    return [name for name in state_names.values() if name not in NEVER_REPORTED] if core else ()


def emit_states(out: Samples, labels: tuple, counts: Dict[str, list], listen_state: Optional[str], options: Options,
                queues: bool = True) -> None:
    """Emit count, queue (and memory) series for each state name of one (family, socket_type, protocol).

    The listener state's queues are accept-queue length and limit, never data: they go to the accept-queue
    metrics. Queue and memory series of a state without sockets only in the full profile (options.full); memory
    only the fields of memory.fields. Without queues (families whose replies carry none) only the counts.
    """
    for state, row in counts.items():
        out.add(m.SOCKETS, labels + (state,), row[0])
        if not queues:
            continue
        if state == listen_state:
            out.add(m.ACCEPT_QUEUE_LENGTH, labels, row[1])
            out.add(m.ACCEPT_QUEUE_LIMIT, labels, row[2])
        if not (row[0] or options.full):
            continue
        if state != listen_state:
            out.add(m.RECEIVE_QUEUE, labels + (state,), row[1])
            out.add(m.SEND_QUEUE, labels + (state,), row[2])
        memory = row[3:]
        for index in options.memory_fields if memory else ():
            out.add(m.MEMORY[index], labels + (state,), memory[index])


def emit_histograms(out: Samples, labels: tuple, hists: Iterable[list], bounds: Tuple[int, ...],
                    sums: Tuple[int, int]) -> None:
    """Sum per-key [receive buckets, send buckets] lists into the two gauge histograms of labels; sums are the
    receive and send queue totals of the same sockets (the histograms' _gsum)."""
    if not bounds:
        return
    totals = [[0] * (len(bounds) + 1), [0] * (len(bounds) + 1)]
    for hist in hists:
        for total, buckets in zip(totals, hist):
            for i, n in enumerate(buckets):
                total[i] += n
    les = [floatToGoString(b) for b in bounds] + ["+Inf"]
    for metric, buckets, total in zip(m.HISTOGRAMS, totals, sums):
        cumulative, running = [], 0
        for le, n in zip(les, buckets):
            running += n
            cumulative.append((le, running))
        out.add(metric, labels, (cumulative, total))


def emit_tally(out: Samples, tally: Tally, split: Split, options: Options, listen_state: Optional[str] = None,
               always: Iterable[Tuple[tuple, Optional[dict]]] = (), extra: Optional[Dict[tuple, dict]] = None,
               queues: bool = True, core: bool = False, width: Optional[int] = None) -> None:
    """The body every socket-family collector shares: group a tally's entries by labels (split), and per labels
    emit every state's row (plus extra[labels][state name] rows from elsewhere, e.g. listener records) and the
    queue histograms of its data sockets (not listeners).

    always: (labels, state table) to emit even when the dump had no such socket (zero rows, see fill_for).
    core: a family whose states alerts and dashboards read one by one: its zero rows are kept (fill_for).
    width: at most this many row values, when the dump carries SK_MEMINFO values the collector does not export
    (UDP receivers need them); every value of the layout otherwise."""
    width = min(width or 1 + tally.layout.nvalues, 1 + tally.layout.nvalues)
    groups: Dict[tuple, Tuple[Optional[dict], List]] = {labels: (table, []) for labels, table in always}
    for entry in tally.entries():
        labels, table, state = split(entry.key)
        groups.setdefault(labels, (table, []))[1].append((state, entry))
    for labels, (table, entries) in sorted(groups.items()):  # a stable order, whatever the kernel's
        counts = by_state_name(((state, entry.row) for state, entry in entries), table, width,
                               fill_for(options, table, core))
        for state, row in (extra or {}).get(labels, {}).items():
            if not row[0] and state not in counts:
                continue  # no such socket, and no zero row wanted
            total = counts.setdefault(state, [0] * width)
            for i, value in enumerate(row):
                total[i] += value
        if not counts:
            continue
        emit_states(out, labels, counts, listen_state, options, queues)
        data = [entry for state, entry in entries if table is None or state_name(table, state) != listen_state]
        # a distribution where there are data sockets (empty ones too in the full profile)
        if queues and (data or options.full):
            emit_histograms(out, labels, (e.hist for e in data if e.hist), tally.bounds,
                            (sum(e.row[1] for e in data), sum(e.row[2] for e in data)))


def emit_port_groups(out: Samples, options: Options, family: str, protocol: str, tally: Tally, state_names: dict,
                     listen_state: str, listeners: Dict[str, int]) -> None:
    """Per port group: counts by state (zeros included) and queue sums of its data sockets.

    listeners: group name -> listening sockets in it (they come from a dump of their own)."""
    for bit, group in enumerate(options.port_groups):
        counts = by_state_name(((key.state, row) for key, row in tally.in_group(bit)), state_names,
                               fill=fill_for(options, state_names, core=True))
        if listeners.get(group.name):
            counts[listen_state][0] += listeners[group.name]
        for state, (count, rq, wq) in counts.items():
            labels = (group.name, family, protocol, state)
            out.add(m.PORT_GROUP_SOCKETS, labels, count)
            if state != listen_state:
                out.add(m.PORT_GROUP_RECEIVE_QUEUE, labels, rq)
                out.add(m.PORT_GROUP_SEND_QUEUE, labels, wq)


def emit_cgroups(out: Samples, options: Options, family: str, protocol: str, tally: Tally, state_names: dict,
                 listen_state: str, listeners: Dict[int, Tuple[int, bool]]) -> None:
    """Counts and data-queue sums per unit or container (states with sockets only); beyond cgroups.max_series the
    quietest are summed into cgroup="other": those in trouble (a listener near its accept-queue limit) are kept
    first, then the largest.

    listeners: cgroup id -> (listening sockets in it, whether one is near its limit); they come from a dump of their
    own."""
    by_name: Dict[str, Dict[str, list]] = {}
    troubled = set()

    def add(cgroup_id: int, state: str, row) -> None:
        total = by_name.setdefault(options.cgroups.name(cgroup_id), {}).setdefault(state, [0, 0, 0])
        for i in range(3):
            total[i] += row[i]

    for cgroup_id, key, row in tally.by_cgroup():
        add(cgroup_id, state_name(state_names, key.state), row)
    for cgroup_id, (count, near) in listeners.items():
        add(cgroup_id, listen_state, (count, 0, 0))
        if near:
            troubled.add(options.cgroups.name(cgroup_id))
    ranked = sorted(by_name, key=lambda n: (n not in troubled, -sum(r[0] for r in by_name[n].values()), n))
    merged: Dict[tuple, list] = {}
    for index, name in enumerate(ranked):
        label = name if index < options.max_cgroups else "other"
        for state, row in by_name[name].items():
            total = merged.setdefault((label, state), [0, 0, 0])
            for i in range(3):
                total[i] += row[i]
    for (label, state), (count, rq, wq) in merged.items():
        labels = (label, family, protocol, state)
        out.add(m.CGROUP_SOCKETS, labels, count)
        if state != listen_state:
            out.add(m.CGROUP_RECEIVE_QUEUE, labels, rq)
            out.add(m.CGROUP_SEND_QUEUE, labels, wq)
