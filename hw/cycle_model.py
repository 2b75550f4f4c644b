"""Analytic cycle model of the accelerator: cycles per frame predicted from the design alone.

It replays the schedule of hw/scheduler.py at the granularity that matters for throughput: per PE, the activation
FIFO, the job queue behind it (credits) and the entry walker (one entry per cycle, empty columns free), with the
broadcaster sending one column per cycle to all PEs only when every FIFO has room, the m words of the element-wise
pass and the independent words in turn, or, in a single stream's last layer, the m words first, as the scheduler
does. The steady-state period runs from one frame's last-layer element-wise pass to the next one's: that pass with
the next frame's layer-0 input interleaved, then layer 0's recurrent columns once the projection readout is done,
then the remaining layers in order. Fixed latencies (FIFO, MAC pipeline, element-wise pipeline, state changes) are
constants below, calibrated against the Amaranth simulation (tests/test_hw_design.py).

Assumptions: every activation is non-zero (zero-skipping only makes frames faster), the input stream is
always valid and the output stream always ready. `steady_state` is the period of a stream of frames that
continue a sequence (recurrent columns broadcast); `first_frame` the latency of one frame on its own that
starts a sequence (recurrent columns skipped).

Streams (`design.streams` > 1, docs/architecture.md, *Streams*): the next frame belongs to another stream,
so its recurrent columns follow its input columns at once instead of the projection readout, and the next
frame's DRAIN_G waits for the end of that readout instead.

Delta mode (`column_share`, docs/architecture.md): each column's entries are weighted by the share of
frames in which it is sent (e.g. from sw.golden's delta counts); the schedule is the one without delta
mode (with one layer the next frame's input goes into the other copy of the deltas: split sums,
hw/design.py). Given the columns one frame sends (boolean shares), a word none of whose columns is sent
costs the delta filter's cycle and nothing else (it does not wait for
the PEs' room, no PE sees it), and a word goes out whole if any of its columns is sent (a group of m
columns with lanes > 1; each PE then pays its entries of the sent ones). `delta_frame_cycles` averages
the frames of a run: the frame period is decided by the busiest PE of each frame, which the average
share of every column would understate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .accelerator import Accelerator
from .design import (RELAY_STAGES, ROOM_MARGIN, STATUS_STAGES, AcceleratorDesign, PHASE_PROJ, PHASE_R, PHASE_X,
                     pe_fifo_words, phase_index)
from .lanes import LaneElementwise
from .pe import SparsePE
from .readout import CELL_READ_LATENCY, PROJ_READ_LATENCY, START_LATENCY

__all__ = ["CyclePrediction", "predict_cycles", "column_work", "default_lanes", "delta_frame_cycles"]

FIFO_LATENCY = 3 + RELAY_STAGES   # broadcast edge -> the word can leave the PE's FIFO (relays, SyncFIFOBuffered)
FETCH_LATENCY = 3         # ... -> its job can be taken by the walker (addresses, pointers, registered, Q, job queue)
JOB_QUEUE_DEPTH = SparsePE.JOB_QUEUE_DEPTH   # words out of the FIFO and not yet taken (the PE's credits)
MAC_DRAIN = 8             # last entry issued -> written (PE stages E D B R A S X Wb) and `busy` low
STATE_OVERHEAD = 2        # cycles spent in setup / drain / layer-end states per phase change
EW_EXIT_LATENCY = 1       # the pass's last m group taken -> the scheduler leaves EW (from a flip-flop)
STATUS_LATENCY = STATUS_STAGES + 1   # the PEs' busy flags (registered twice) and the drain tests: each drain waits
READER_LATENCY = 1        # y memory / accumulator read latency of the readers
Y_READER_EXTRA = 2        # the y reader's output register and slice after its memory: its words come two cycles later
ELEMENTWISE_LATENCY = LaneElementwise.LATENCY   # the lanes' ElementwiseUnits and their output slices
SLICE_LATENCY = 1         # each register slice (SkidBuffer) on a stream: the cells' and the m words'
CELL_SLICES = Accelerator.CELL_SLICES   # slices on the cells' way to the element-wise lanes
UNPACKER_LATENCY = 5 + RELAY_STAGES   # lanes > 1: relays, the unpacker's input register, mask stages, queue
UNPACKER_SENT_LATENCY = 1  # ... a column sent to the PE, in the unpacker's output register first
# An unpacker's `room` counts a word from its first stage until its last column has gone to the PE (a word without
# a column for the PE: through the mask stages only), and the broadcaster sees the flag through the region AND and
# `all_ready` (hw/lane_unpacker.py, hw/broadcast.py): a word sent at cycle s holds back the sends from
# s + UNPACKER_ROOM_SEEN on (relays, the first stage, the flag, the AND, all_ready: ROOM_MARGIN words get out
# before), one without columns until s + UNPACKER_ROOM_SEEN + UNPACKER_MASK_STAGES, one whose last column the
# replay moves at x until x + UNPACKER_ROOM_RELEASE (the unpacker sends it a cycle after that move, then the count,
# the flag, the AND, all_ready). The replay's PE FIFO holds the unpacker's credits' worth, pe_fifo_words.
UNPACKER_ROOM_SEEN = ROOM_MARGIN + 1
UNPACKER_MASK_STAGES = 4
UNPACKER_ROOM_RELEASE = 1 + 4
DEFAULT_LANES_LIMIT = 8   # default_lanes tries 1, 2, 4, 8 lanes ...
DEFAULT_LANES_GAIN = 0.02  # ... and doubles them while that shortens the frame by more than 2 %


@dataclass(frozen=True)
class CyclePrediction:
    steady_state: int          # cycles per frame of a stream of frames continuing a sequence
    first_frame: int           # latency of a lone frame starting a sequence (first input to last output)
    mac_cycles: tuple[int, ...]  # entries (non-zeros + padding) each PE processes in a steady-state frame
    phases: dict               # per layer and phase (x, r, proj): the busiest PE's entries

    @property
    def ideal(self) -> float:
        """Entries of the busiest PE: no schedule can be faster."""
        return float(max(self.mac_cycles))


def column_work(design: AcceleratorDesign, layer: int, kind: int) -> np.ndarray:
    """Entries per (PE, column) of one phase, from the pointer memories: shape (n_pes, columns)."""
    info = design.layers[layer]
    columns = {PHASE_X: info.input_size, PHASE_R: info.recurrent_size, PHASE_PROJ: info.cell_size}[kind]
    work = np.zeros((design.n_pes, columns), dtype=np.int64)
    for p, pe in enumerate(design.pes):
        phase = pe.phases[phase_index(layer, kind)]
        if not phase.used:
            continue
        pointers = np.asarray(pe.pointers[phase.ptr_offset:phase.ptr_offset + columns + 1], dtype=np.int64)
        work[p] = np.diff(pointers)
    return work


class _Stream:
    """Words offered to the broadcaster: entries per (PE, column), `lanes` consecutive columns per word (a
    group of m words) or one, the earliest cycle each word may be offered, and optionally a gate: a
    function of the other streams' completion that opens it."""

    def __init__(self, work: np.ndarray, available=None, opens_after=None, lanes: int = 1, sent=None):
        # `done` (see _simulate) also holds ("sent", k): the cycle stream k's last word was broadcast
        pad = (-work.shape[1]) % lanes
        columns = np.concatenate([work, np.zeros((work.shape[0], pad), dtype=work.dtype)],
                                 axis=1).reshape(work.shape[0], -1, lanes)
        self.n_pes, self.words = columns.shape[:2]
        # delta mode, one frame's columns (boolean): the words with a column sent; the others stop at the filter
        self.word_sent = None if sent is None else \
            np.concatenate([sent, np.zeros(pad, dtype=bool)]).reshape(-1, lanes).any(axis=1).tolist()
        # Python lists: the replay reads one word per PE per cycle, where NumPy indexing costs more than it saves
        self.columns = columns.tolist()
        self.available = available
        self.opens_after = opens_after      # callable(done: dict) -> cycle or None (not yet known)
        self.sent = 0
        self.completed = [0] * self.n_pes   # words finished per PE
        self.pes_finished = 0               # PEs that finished every word
        self.done_at = None

    def ready(self, cycle: int, done: dict) -> bool:
        if self.sent >= self.words:
            return False
        if self.available is not None and self.available[self.sent] > cycle:
            return False
        if self.opens_after is not None:
            opens = self.opens_after(done)
            return opens is not None and opens <= cycle
        return True

    def columns_for(self, pe: int, unpack: bool) -> list[int]:
        """The entries of each column PE `pe` is handed of the next word (none: the word is dropped); a
        LaneUnpacker (`unpack`) drops the columns without entries (its mask), of every phase."""
        columns = self.columns[pe][self.sent]
        return [entries for entries in columns if entries] if unpack else list(columns)


def _simulate(streams: list[_Stream], fifo_depth: int, unpack: bool = False, alternate: bool = False) -> int:
    """Cycle-level replay of broadcaster + PEs (FIFO, job queue, walker) for several streams of words,
    with `unpack` through a LaneUnpacker per PE (its FIFO of words, one column per cycle into the PE's);
    when more than one stream can send, the first in list order, or with `alternate` the one that did not
    send last (the scheduler's two rules). Sets each stream's `done_at` (cycle its
    last word was finished by every PE, plus the MAC drain) and returns the cycle everything is done."""
    n_pes = streams[0].n_pes   # callers pass at least one stream
    unpacking = [[] for _ in range(n_pes)]   # [columns left, visible_at, stream, counted] per unpacker FIFO word
    # per unpacker, what its room flag counts: [first cycle the broadcaster sees it, first cycle it no longer
    # does (None: not known yet)] per word
    counted = [[] for _ in range(n_pes)]
    queues = [[] for _ in range(n_pes)]      # (entries, visible_at, stream, ends its word) per PE FIFO column
    jobs = [[] for _ in range(n_pes)]        # the same, out of the FIFO: in the fetch stages or the job queue
    walking = [None] * n_pes                 # (stream, ends its word) of the column being walked
    remaining = [0] * n_pes
    done: dict = {}
    last_stream = -1
    cycle = 0

    def finish(p, stream_index, ends_word=True):
        if not ends_word:
            return
        stream = streams[stream_index]
        stream.completed[p] += 1
        stream.pes_finished += stream.completed[p] == stream.words
        if stream.pes_finished == n_pes and stream.done_at is None:
            stream.done_at = cycle + MAC_DRAIN
            done[stream_index] = stream.done_at

    for index, stream in enumerate(streams):
        if stream.words == 0:
            stream.done_at = 0
            done[index] = 0
    credits = pe_fifo_words(fifo_depth)   # an unpacker sends a column to its PE with a credit

    def has_room(p):
        if not unpack:
            return len(queues[p]) < fifo_depth
        words = counted[p]
        while words and words[0][1] is not None and words[0][1] <= cycle:
            words.pop(0)
        return sum(1 for seen, gone in words if seen <= cycle and (gone is None or gone > cycle)) < fifo_depth

    while True:
        candidates = [k for k, stream in enumerate(streams) if stream.ready(cycle, done)]
        chosen = None
        if candidates:
            others = [k for k in candidates if k != last_stream] if alternate else candidates
            chosen = others[0] if others else candidates[0]
            stream = streams[chosen]
            dropped = stream.word_sent is not None and not stream.word_sent[stream.sent]
            # the room flags as the broadcaster sees them (has_room); a word that is dropped leaves the
            # broadcaster's register only when they are up too (hw/broadcast.py)
            if not all(has_room(p) for p in range(n_pes)):
                chosen = None
        if chosen is not None:
            for p in range(n_pes):
                columns = [] if dropped else stream.columns_for(p, unpack)
                if unpack and not dropped:   # a dropped word stops at the broadcaster
                    seen = cycle + UNPACKER_ROOM_SEEN
                    counted[p].append([seen, None if columns else seen + UNPACKER_MASK_STAGES])
                if not columns:
                    finish(p, chosen)
                elif unpack:
                    unpacking[p].append([columns, cycle + UNPACKER_LATENCY, chosen, counted[p][-1]])
                else:
                    queues[p].append((columns[0], cycle + FIFO_LATENCY, chosen, True))
            stream.sent += 1
            last_stream = chosen
            if stream.sent == stream.words:
                done[("sent", chosen)] = cycle
        for p in range(n_pes):
            if unpack and unpacking[p] and unpacking[p][0][1] <= cycle and len(queues[p]) < credits:
                columns, _, index, count = unpacking[p][0]
                queues[p].append((columns.pop(0), cycle + UNPACKER_SENT_LATENCY + FIFO_LATENCY, index, not columns))
                if not columns:
                    unpacking[p].pop(0)
                    count[1] = cycle + UNPACKER_ROOM_RELEASE
            if remaining[p] > 0:
                remaining[p] -= 1
                if remaining[p] == 0:
                    finish(p, *walking[p])
            while jobs[p] and jobs[p][0][1] <= cycle and jobs[p][0][0] == 0:   # empty: dropped, no walker cycle
                _, _, index, ends_word = jobs[p].pop(0)
                finish(p, index, ends_word)
            if remaining[p] == 0 and jobs[p] and jobs[p][0][1] <= cycle:
                entries, _, index, ends_word = jobs[p].pop(0)
                remaining[p], walking[p] = entries, (index, ends_word)
            if queues[p] and queues[p][0][1] <= cycle and len(jobs[p]) < JOB_QUEUE_DEPTH:
                entries, _, index, ends_word = queues[p].pop(0)
                jobs[p].append((entries, cycle + FETCH_LATENCY, index, ends_word))
        cycle += 1
        if all(stream.done_at is not None for stream in streams):
            return max(stream.done_at for stream in streams)
        if cycle > 10_000_000:  # pragma: no cover - a bug in the replay, not a property of the design
            raise RuntimeError("cycle model did not converge")


def predict_cycles(design: AcceleratorDesign, params=None, column_share: dict | None = None) -> CyclePrediction:
    """Predict cycles per frame (see the module docstring). An EncodedModel is accepted too (with
    `params`), for the Verilog sidecar. `column_share` (delta mode): {(layer, PHASE_X / PHASE_R /
    PHASE_PROJ): the share of frames each column of the phase is sent, shape (columns,)}."""
    if not isinstance(design, AcceleratorDesign):
        design = AcceleratorDesign.from_encoded(design, params)
    lanes = design.lanes
    depth, unpack = design.params.fifo_depth, lanes > 1
    layers = design.layers
    last = design.n_layers - 1
    work = {(l, kind): column_work(design, l, kind) for l in range(design.n_layers)
            for kind in (PHASE_X, PHASE_R, PHASE_PROJ)}
    frame_sent = {}  # one frame's columns (boolean shares): the words sent
    for key, share in (column_share or {}).items():
        share = np.asarray(share)
        if share.dtype == bool:
            frame_sent[key] = share
            work[key] = work[key] * share
        else:
            work[key] = np.rint(work[key] * share.astype(np.float64)).astype(np.int64)
    ew_arrival = ELEMENTWISE_LATENCY + START_LATENCY + CELL_READ_LATENCY + (CELL_SLICES + 1) * SLICE_LATENCY

    gates_tail = READER_LATENCY + STATE_OVERHEAD + STATUS_LATENCY + Y_READER_EXTRA

    def follow(l):
        # layer l > 0 reads y_{l-1} behind its projection readout, which started two cycles before
        return START_LATENCY + PROJ_READ_LATENCY if l > 0 and layers[l - 1].proj_size is not None else 0

    def gates(l, with_recurrent=True):
        columns = [work[(l, PHASE_X)]] + ([work[(l, PHASE_R)]] if with_recurrent else [])
        keys = [(l, PHASE_X)] + ([(l, PHASE_R)] if with_recurrent else [])
        gate_sent = (np.concatenate([frame_sent[key] for key in keys])
                     if all(key in frame_sent for key in keys) else None)
        return follow(l) + _simulate([_Stream(np.concatenate(columns, axis=1), sent=gate_sent)], depth,
                                     unpack) + gates_tail

    def elementwise(l, overlap_next_input=False, recurrent_next=False, recurrent_ahead=False):
        """EW of layer l (+ proj and its readout start); optionally with layer l+1's recurrent words and then
        its input words (its gates: X_SETUP waits for the recurrent words to be sent, not done), or the
        next frame's layer-0 input words and then its recurrent words once the readout has started,
        interleaved. Returns cycles from the start of EW until everything listed is done."""
        info = layers[l]
        has_proj = info.proj_size is not None
        groups = design.lane_groups(l)
        # the element-wise pass alone: one group per cycle, or without a projection one y word (a cell) per
        # cycle, a group's lanes in turn (hw/scheduler.py, EW)
        last_m = ew_arrival + (groups if has_proj else info.cell_size)
        ew_exit = last_m + EW_EXIT_LATENCY
        streams = []
        if has_proj:   # m words are broadcast as proj columns; without a projection they become y words
            streams.append(_Stream(work[(l, PHASE_PROJ)], ew_arrival + np.arange(groups), lanes=lanes,
                                   sent=frame_sent.get((l, PHASE_PROJ))))
        # the y reader follows the ProjReader one word behind, so what comes next waits only for its start
        readout = (START_LATENCY + PROJ_READ_LATENCY + STATE_OVERHEAD + STATUS_LATENCY) if has_proj else 0

        def readout_started(done):
            if not has_proj:
                return ew_exit + STATE_OVERHEAD
            return None if 0 not in done else done[0] + readout + STATE_OVERHEAD

        if recurrent_ahead:
            ahead_index = len(streams)
            streams.append(_Stream(work[(l + 1, PHASE_R)], sent=frame_sent.get((l + 1, PHASE_R))))

            def next_input_opens(done):
                # layer l+1's input words: y_l behind the readout, once the y reader has sent the recurrent words
                # (X_SETUP) and the state machine has left EW and LAYER_END
                sent, started = done.get(("sent", ahead_index)), readout_started(done)
                if sent is None or started is None:
                    return None
                return max(started + follow(l + 1), sent + 2 + READER_LATENCY + Y_READER_EXTRA,
                           ew_exit + 2 * STATE_OVERHEAD + follow(l + 1))
            streams.append(_Stream(work[(l + 1, PHASE_X)], opens_after=next_input_opens,
                                   sent=frame_sent.get((l + 1, PHASE_X))))
        if overlap_next_input:
            x_index = len(streams)
            streams.append(_Stream(work[(0, PHASE_X)], sent=frame_sent.get((0, PHASE_X))))
            if recurrent_next:
                def opens(done):
                    # the y reader starts once the input is in (its first word 3 cycles on), and with one
                    # stream follows the projection readout
                    sent = done.get(("sent", x_index))
                    started = readout_started(done) if design.streams == 1 else 0
                    return (None if sent is None or started is None
                            else max(sent + 2 + READER_LATENCY + Y_READER_EXTRA, started + Y_READER_EXTRA))
                streams.append(_Stream(work[(0, PHASE_R)], opens_after=opens, sent=frame_sent.get((0, PHASE_R))))
        # m words first only in a single stream's last layer (recurrent_ahead: not the last layer)
        end = _simulate(streams, depth, unpack, alternate=design.streams > 1 or recurrent_ahead) if streams else 0
        if recurrent_ahead:   # ends with layer l+1's gates
            return end + gates_tail
        proj_end = (streams[0].done_at + readout) if has_proj else ew_exit
        if has_proj and recurrent_next and design.streams > 1:
            # nothing follows the readout: the next frame's DRAIN_G waits for its last word (`readout` has the
            # read latency already: its first word's)
            proj_end += info.proj_size
        return max(end, proj_end, ew_exit) + STATE_OVERHEAD

    # steady state: the frame period, from the start of one frame's last-layer EW to the next one's
    steady = elementwise(last, overlap_next_input=True, recurrent_next=True)
    for l in range(last):
        # layer l+1's recurrent columns go out during layer l's element-wise pass
        steady += elementwise(l, recurrent_ahead=True)
        steady += int(design.streams > 1)   # with streams R_SETUP passes through R_READ, a cycle
    steady += STATE_OVERHEAD + STATUS_LATENCY  # DRAIN_G of layer 0 (its gates ran inside the overlapped phase)

    # latency of a lone frame that starts a sequence: no recurrent columns, nothing to overlap with, up to
    # its last output word (the last layer's readout and the output streamer included)
    first = gates(0, with_recurrent=False)
    for l in range(design.n_layers):
        first += elementwise(l)
        if l < last:
            first += gates(l + 1, with_recurrent=False)
    if layers[last].proj_size is not None:
        first += layers[last].proj_size + START_LATENCY + PROJ_READ_LATENCY + 1
    first += design.output_size + READER_LATENCY + 1

    mac = np.zeros(design.n_pes, dtype=np.int64)
    for (l, kind), entries in work.items():
        mac += entries.sum(axis=1)
    phases = {f"layer{l}": {kind: int(work[(l, k)].sum(axis=1).max())
                            for kind, k in (("x", PHASE_X), ("r", PHASE_R), ("proj", PHASE_PROJ))}
              for l in range(design.n_layers)}
    return CyclePrediction(steady_state=int(steady), first_frame=int(first),
                           mac_cycles=tuple(int(v) for v in mac), phases=phases)


def default_lanes(design: AcceleratorDesign) -> int:
    """The fewest element-wise lanes with which the element-wise pass does not bound the frame: the first
    of 1, 2, 4, ... (dividing the PE count, at most DEFAULT_LANES_LIMIT) whose predicted steady-state frame
    twice the lanes would not shorten by more than DEFAULT_LANES_GAIN."""
    if not isinstance(design, AcceleratorDesign):
        raise TypeError(f"default_lanes needs an AcceleratorDesign, got {type(design).__name__}")
    lanes = 1
    frame = predict_cycles(dataclasses.replace(design, lanes=lanes)).steady_state
    while 2 * lanes <= DEFAULT_LANES_LIMIT and design.n_pes % (2 * lanes) == 0:
        doubled = predict_cycles(dataclasses.replace(design, lanes=2 * lanes)).steady_state
        if doubled >= frame * (1 - DEFAULT_LANES_GAIN):
            break
        lanes, frame = 2 * lanes, doubled
    return lanes


def delta_frame_cycles(design: AcceleratorDesign, frames_sent: list[dict], max_frames: int = 200) -> float:
    """Delta mode: the mean steady-state cycles per frame over the frames of a run, each frame predicted
    with the columns it sends (`frames_sent`: per frame {(layer, PHASE_X / PHASE_R / PHASE_PROJ): a boolean
    array (columns,)}); at most `max_frames` of them, evenly spaced."""
    if not isinstance(design, AcceleratorDesign):
        raise TypeError(f"delta_frame_cycles needs an AcceleratorDesign, got {type(design).__name__}")
    if not frames_sent:
        raise ValueError("delta_frame_cycles needs the columns sent of at least one frame")
    if not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames must be an integer >= 1, got {max_frames!r}")
    picked = np.unique(np.linspace(0, len(frames_sent) - 1, min(max_frames, len(frames_sent))).round().astype(int))
    return float(np.mean([predict_cycles(design, column_share={key: np.asarray(mask, dtype=bool)
                                                               for key, mask in frames_sent[k].items()}).steady_state
                          for k in picked]))
