"""CTC decoding on the board: greedy best path, and a prefix beam search constrained by a pattern.

numpy only (no torch). The input is one line's softmax probabilities, (T, C): T frames, C = len(charset) + 1
classes, one of them the CTC blank (class `blank`, 0 by default; the other classes are `charset` in order).

Constraints (`compile_constraint`): allowed characters, min/max length and a small pattern language, a subset of
Python's regular expressions that must match the WHOLE reading (like `re.fullmatch`): literals, `\\d`, classes
`[0-9.,]`, `.`, `{n}`, `{n,m}`, `?`, `*`, `+`, groups and `|` (e.g. `\\d{6}`, `\\d+[.,]\\d\\d`). The pattern is
turned into a deterministic automaton over the model's charset with `interegular` (the regex -> FSM library
built for constrained decoding); the beam search only extends a prefix with a character the automaton accepts
and only keeps final beams in an accepting state (Graves 2012, ch. 7, prefix search; the "constrained CTC" of
lexicon-/grammar-restricted OCR decoders).

String confidence (the same rule for both decoders, so one rejection threshold means the same thing):
the product of the characters' probabilities, a character's probability being the highest posterior of its
class over the frames it occupies (its CTC spike). It reads as "the chance that every character read is right"
when the frames are independent, falls with each unsure character and ranks reads well; it does not see a
character the model may have hidden in blank frames. Measured on 300 held-out lines read by a ctc-w16-d2-r24
student (75 % string accuracy; clean canvases and photos alike): it separates right from wrong reads with an
AUROC of 0.82, like the least sure character's probability (0.81-0.82) and above the mean character probability
(0.81) and the best path's probability (0.73). An empty reading's confidence is the lowest blank
probability over the frames (the chance that the least sure frame really holds nothing). A constrained reading
that overrules the model (drops or replaces a character it saw: its frame's most probable class is a character
the reading does not put there) is no surer than the class it puts at that frame (`Decoded.overruled`): a
4-character line read under `max_len=2` is refused by its confidence, not reported at 0.99. A greedy reading
overrules nothing, so this never changes it.

Calibration: a bundle's `lines.confidence_temperature` T (fitted on the val split at export, see
`edgekd_runtime.confidence`) makes the recognizer search and align on softmax(scores) as always, then read every
character's probability and the string confidence from softmax(scores / T) over the same frames (`rescored`). So the
reading (text, characters, frames) is the same with or without calibration, for greedy and constrained decoding
alike; only the probabilities change. For greedy decoding this equals decoding softmax(scores / T) directly, since
T does not move the per-frame argmax.
"""

from __future__ import annotations

import functools
import heapq
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputShapeError, PatternError

#: Search passes as (class cut, beam cut): per frame the search extends a prefix only with the frame's best class
#: and the classes whose log probability is at least the class cut; beams whose log probability falls more than the
#: beam cut below the best beam's are dropped. The first pass uses pyctcdecode's defaults (token_min_logp -5,
#: beam_prune_logp -10); when a constraint leaves no allowed reading in one pass (it needs characters the model
#: hardly saw), the next, wider pass runs, the last one without cuts.
SEARCH_PASSES = ((-5.0, 10.0), (-12.0, 20.0), (-math.inf, math.inf))
#: Patterns whose bounded repeats allow readings longer than this are refused (their automaton has a state per
#: character; no line holds that many).
MAX_PATTERN_CHARS = 1000
_LOOKAROUND = re.compile(r"(?<!\\)\(\?<?[=!]")  # an unescaped "(?=", "(?!", "(?<=", "(?<!"
_SUPPORTED = "use literals, \\d, [classes], ., {n}, {n,m}, ?, *, +, groups and |"
_NEG = -math.inf


@dataclass(frozen=True)
class Decoded:
    """A decoded line.

    Attributes:
        text: the reading.
        confidence: string confidence in [0, 1] (see the module doc).
        characters: per character (char, probability, first frame, last frame), frames inclusive.
        overruled: a constrained reading's frames (frame, aligned class) whose most probable class is a character
            other than the one the reading puts there (a character dropped or replaced to satisfy the constraint);
            the confidence is at most the aligned class's probability at each. Empty for greedy readings.
    """

    text: str
    confidence: float
    characters: tuple[tuple[str, float, int, int], ...]
    overruled: tuple[tuple[int, int], ...] = ()


NOTHING = Decoded("", 0.0, ())  # no allowed reading fits the frames


@dataclass(frozen=True)
class Constraint:
    """A compiled reading constraint: a deterministic automaton over `charset` plus length limits.

    Attributes:
        charset: the model's characters (the automaton's alphabet, by index).
        pattern: the source pattern (None: any string over the allowed characters).
        start: the start state.
        table: per state, per charset index: the next state, or -1 when that character is not allowed there.
        accepting: per state, whether a reading may end there.
        to_accept: per state, the fewest characters that lead to an accepting state.
        min_len, max_len: length limits of the reading (max_len None: unlimited).
    """

    charset: str
    pattern: str | None
    start: int
    table: tuple[tuple[int, ...], ...]
    accepting: tuple[bool, ...]
    to_accept: tuple[int, ...]
    min_len: int = 0
    max_len: int | None = None

    def matches(self, text: str) -> bool:
        """Whether `text` satisfies the constraint."""
        if len(text) < self.min_len or (self.max_len is not None and len(text) > self.max_len):
            return False
        s = self.start
        for ch in text:
            i = self.charset.find(ch)
            s = self.table[s][i] if i >= 0 else -1
            if s < 0:
                return False
        return self.accepting[s]


def compile_constraint(charset: str, pattern: str | None = None, allowed: str | None = None,
                       min_len: int | None = None, max_len: int | None = None,
                       max_chars: int | None = None) -> Constraint | None:
    """Compile what a reading must look like; None when nothing is constrained.

    Args:
        charset: the model's characters.
        pattern: a pattern the whole reading must match (see the module doc), e.g. `\\d{6}`.
        allowed: the characters the reading may use (a subset of `charset`).
        min_len, max_len: length limits of the reading.
        max_chars: the most characters a reading can hold (a line model: its output frames at its widest input,
            `LineRecognizer.max_chars`); a constraint that needs more is refused.

    Raises:
        PatternError: a malformed or unsupported pattern, allowed characters outside the charset, bad length
            limits, or a constraint that no string over the charset within the length limits (and max_chars) can
            satisfy.
    """
    for name, value, kind in (("pattern", pattern, str), ("allowed", allowed, str), ("min_len", min_len, int),
                              ("max_len", max_len, int)):
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise PatternError(f"{name} must be {'a string' if kind is str else 'an integer'} or None, got "
                               f"{type(value).__name__} {value!r}")
    return _compiled(charset, pattern, allowed, min_len, max_len, max_chars)


@functools.lru_cache(maxsize=64)  # a reader given the same pattern line after line compiles it once
def _compiled(charset: str, pattern: str | None, allowed: str | None, min_len: int | None, max_len: int | None,
              max_chars: int | None) -> Constraint | None:
    """`compile_constraint` on arguments of the right types."""
    if pattern is None and allowed is None and min_len is None and max_len is None:
        return None
    lo, hi = _check_lengths(min_len, max_len, max_chars)
    letters = _allowed_letters(charset, allowed)
    if pattern is None:
        table: tuple[tuple[int, ...], ...] = (tuple(0 if ok else -1 for ok in letters),)
        accepting: tuple[bool, ...] = (True,)
        start = 0
    else:
        table, accepting, start = _pattern_automaton(pattern, charset, letters, max_chars)
    to_accept = _distances_to_accept(table, accepting)
    what = f"pattern {pattern!r}" if pattern is not None else f"allowed characters {allowed!r}"
    if to_accept[start] < 0:
        raise PatternError(f"no reading over the model's characters {charset!r}"
                           f"{'' if allowed is None else f' (allowed: {allowed!r})'} can match {what}; "
                           f"use characters the model knows")
    table = tuple(tuple(n if n >= 0 and to_accept[n] >= 0 else -1 for n in row) for row in table)
    if not _fits_lengths(table, accepting, start, lo, hi):
        raise PatternError(f"no reading of {lo}..{'any' if hi is None else hi} characters can match {what} "
                           f"(the shortest match has {to_accept[start]}); loosen the length limits or the pattern")
    return Constraint(charset, pattern, start, table, accepting, to_accept, lo, hi)


def decode(probs: np.ndarray, charset: str, constraint: Constraint | None = None, blank: int = 0,
           beam_width: int = 16) -> Decoded:
    """Decode one line: greedy best path without a constraint, constrained prefix beam search with one.

    Args:
        probs: (T, C) softmax probabilities, C = len(charset) + 1.
        charset: the model's characters (class order, the blank left out).
        constraint: from `compile_constraint` (None: greedy).
        blank: the blank's class index.
        beam_width: beams kept per frame by the constrained search.

    Returns:
        The reading; `Decoded("", 0.0, ())` when no allowed reading fits in T frames.
    """
    if constraint is None:
        return greedy(probs, charset, blank)
    return beam_search(probs, charset, constraint, blank, beam_width)


def rescored(d: Decoded, probs: np.ndarray, charset: str, blank: int = 0) -> Decoded:
    """Reading `d` with each character's probability and the string confidence read from other posteriors
    `probs` (T, C) of the same line (e.g. temperature-scaled) over the same frames; text and frames unchanged."""
    if d is NOTHING or len(probs) == 0:
        return d
    if not d.characters:
        return Decoded(d.text, float(probs[:, blank].min()), ())
    cls = [charset.index(ch) for ch, _, _, _ in d.characters]
    chars = tuple((ch, float(probs[a:b + 1, c + (c >= blank)].max()), a, b)
                  for (ch, _, a, b), c in zip(d.characters, cls))
    return Decoded(d.text, _confidence(chars, probs, d.overruled), chars, d.overruled)


def _confidence(chars: tuple[tuple[str, float, int, int], ...], probs: np.ndarray,
                overruled: tuple[tuple[int, int], ...]) -> float:
    """The string confidence of a non-empty reading (the module doc): its characters' probabilities multiplied,
    and no more than the aligned class's probability at any frame the reading overrules."""
    conf = float(np.prod([c[1] for c in chars], dtype=np.float64))
    return min(conf, *(float(probs[t, k]) for t, k in overruled)) if overruled else conf


def greedy(probs: np.ndarray, charset: str, blank: int = 0) -> Decoded:
    """Best-path decoding: argmax per frame, repeats merged, blanks dropped."""
    probs = _check_probs(probs, charset, blank)
    best = probs.argmax(1)
    return Decoded(*best_path(best, probs[np.arange(len(best)), best], charset, blank))


def greedy_scores(scores: np.ndarray, charset: str, temperature: float = 1.0, blank: int = 0) -> Decoded:
    """Best-path decoding straight from one line's CTC scores (T, C) (logits, dequantized, finite): the reading
    `rescored(greedy(softmax(scores)), softmax(scores, temperature))` gives, text, frames, probabilities and
    confidence alike (bit for bit), without either softmax (see `scored_best_path`). What `LineRecognizer.read`
    decodes with when no constraint is given."""
    scores = _check_probs(scores, charset, blank)
    z = scores.astype(np.float32, copy=False)
    return Decoded(*scored_best_path(z, z.argmax(1), charset, blank,
                                     None if temperature == 1.0 else np.array(temperature, np.float32)))


def scored_best_path(y: np.ndarray, best: np.ndarray, charset: str, blank: int = 0,
                     divisor: np.ndarray | None = None) -> tuple[str, float, tuple[tuple[str, float, int, int], ...]]:
    """`best_path` straight from one line's float32 scores y (T, C) as the model gave them, `best` their argmax per
    frame.

    The tempered scores z are y / `divisor` (a 0-d float32 array, None for T = 1). A frame's best class is the
    argmax of y (dividing by T > 0 does not move it), and the tempered softmax there is 1 / sum(exp(z - z_best))
    (exp(0) = 1), which is what `confidence.softmax` gives there, bit for bit. Only the frames that hold a
    character are computed (about a fifth of a line's; all of them for an empty reading, whose confidence is the
    lowest blank probability): each numpy call costs about as much as the work on a whole line, so fewer rows and
    fewer calls is what makes this faster than the softmax. y is not written to. 8-bit scores:
    `quantized_best_path`."""
    frames = (best.nonzero() if blank == 0 else (best != blank).nonzero())[0]
    if not len(frames):
        if not len(y):
            return "", 1.0, ()
        z = y / divisor if divisor is not None else y.copy()
        return "", float(best_class_probabilities(z, best).min()), ()
    cls = best.take(frames)
    z = y.take(frames, 0)  # (n, C), a new array
    if divisor is not None:
        np.divide(z, divisor, z)
    return _runs(frames.tolist(), cls.tolist(), best_class_probabilities(z, cls).tolist(), _labels(charset, blank))


def exp_table(tempered: np.ndarray) -> np.ndarray | None:
    """For 8-bit quantized scores, the table `quantized_best_path` reads: per bit pattern (the score read as
    uint8), exp(z - max z) of its tempered value z (the 256 `tempered` values: dequantized, divided by the
    temperature), float64. None when one underflows to 0 (a temperature so low that a frame could hold only
    zeros: decode the softmax instead)."""
    e = np.exp(tempered.astype(np.float64) - float(tempered.max()))
    return e if e.min() > 0.0 else None


def quantized_best_path(y: np.ndarray, best: np.ndarray, charset: str, blank: int, table: np.ndarray
                        ) -> tuple[str, float, tuple[tuple[str, float, int, int], ...]]:
    """`scored_best_path` for 8-bit quantized scores y (T, C), `best` their argmax per frame (dequantizing does not
    move it): a frame's tempered softmax at its best class is table[y_best] / the sum of table[y] over its classes
    (exp(z_c - z_max) over their sum: `confidence.softmax`, in float64: within float32 rounding of its value).
    One lookup and one dot product over the frames that hold a character, where `scored_best_path` takes five
    numpy calls more."""
    frames = (best.nonzero() if blank == 0 else (best != blank).nonzero())[0]
    if not len(frames):
        return "", min(_table_peaks(y.view(np.uint8), best, table)) if len(y) else 1.0, ()
    cls = best.take(frames)
    return _runs(frames.tolist(), cls.tolist(), _table_peaks(y.take(frames, 0).view(np.uint8), cls, table),
                 _labels(charset, blank))


def _table_peaks(bits: np.ndarray, cls: np.ndarray, table: np.ndarray) -> list[float]:
    """Per row of 8-bit scores `bits` (n, C) (read as uint8), the tempered softmax at its class `cls` (n,)."""
    e = table.take(bits)
    return np.divide(e[_row_starts(1, len(cls)), cls], e.dot(_ones(bits.shape[1]))).tolist()  # rows 0 .. n-1


@functools.lru_cache(maxsize=64)
def _ones(n: int) -> np.ndarray:
    """n float64 ones (read-only, cached): a dot product with them sums rows faster than add.reduce."""
    ones = np.ones(n)
    ones.flags.writeable = False
    return ones


@functools.lru_cache(maxsize=512)
def _row_starts(classes: int, rows: int) -> np.ndarray:
    """Where each of `rows` rows of `classes` values starts in their flat array (read-only, cached)."""
    starts = np.arange(0, rows * classes, classes)
    starts.flags.writeable = False
    return starts


def best_class_probabilities(z: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Per frame, softmax(z)[t, best[t]] (float32) for scores z (T, C) float32 whose per-frame argmax is `best`,
    computed as `confidence.softmax` does it: exp(z - max) over its sum, which is 1 / the sum at the best class.
    Overwrites z with exp(z - max)."""
    np.subtract(z, z.reshape(-1).take(best + _row_starts(z.shape[1], len(z))).reshape(-1, 1), z)
    np.exp(z, z)
    return np.reciprocal(np.add.reduce(z, 1))  # 1 / the sum, rounded once (float32)


def best_path(best: np.ndarray, peak: np.ndarray, charset: str, blank: int = 0
              ) -> tuple[str, float, tuple[tuple[str, float, int, int], ...]]:
    """A best path (per frame: its class `best`, and that class's probability `peak`) -> (text, confidence,
    characters) as `Decoded` holds them: repeats merged, blanks dropped; a character's probability is its peak over
    its frames, the confidence their product. An empty reading's confidence is the lowest blank probability over the
    frames (1.0 without frames)."""
    frames = (best.nonzero() if blank == 0 else (best != blank).nonzero())[0]
    if not len(frames):
        return "", float(peak.min()) if len(peak) else 1.0, ()
    return _runs(frames.tolist(), best.take(frames).tolist(), peak.take(frames).tolist(), _labels(charset, blank))


def _runs(frames: list[int], cls: list[int], peak: list[float], labels: tuple[str, ...]
          ) -> tuple[str, float, tuple[tuple[str, float, int, int], ...]]:
    """The non-blank frames of a best path (frame, class, that class's probability), in order -> (text,
    confidence, characters): a run of consecutive frames of one class is one character (`labels[class]`), its
    probability the run's peak; the confidence is their product."""
    chars: list[tuple[str, float, int, int]] = []
    a = last_t = last_k = -2
    top = 0.0
    for t, k, p in zip(frames, cls, peak):
        if t == last_t + 1 and k == last_k:
            if p > top:
                top = p
        else:
            if a >= 0:
                chars.append((labels[last_k], top, a, last_t))
            a, last_k, top = t, k, p
        last_t = t
    chars.append((labels[last_k], top, a, last_t))
    return "".join([c[0] for c in chars]), math.prod([c[1] for c in chars]), tuple(chars)


@functools.lru_cache(maxsize=64)
def _labels(charset: str, blank: int) -> tuple[str, ...]:
    """Per class, its character ('' for the blank): the charset with the blank put in at its index."""
    return (*charset[:blank], "", *charset[blank:])


def beam_search(probs: np.ndarray, charset: str, constraint: Constraint | None = None, blank: int = 0,
                beam_width: int = 16) -> Decoded:
    """CTC prefix beam search in log space (blank / non-blank prefix probabilities), optionally constrained.

    The reading's characters and frames come from a forced (Viterbi) alignment of the best prefix.
    """
    probs = _check_probs(probs, charset, blank)
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    logp = np.log(np.maximum(probs.astype(np.float64), 1e-30))
    for class_cut, beam_cut in SEARCH_PASSES if constraint is not None else SEARCH_PASSES[:1]:
        best = _prefix_search(logp, constraint, blank, beam_width, class_cut, beam_cut)
        if best is not None:
            break
    else:
        return NOTHING
    return _aligned(probs, logp, charset, best, blank)


# ---- the search ------------------------------------------------------------------------------------------------

def _lse(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == _NEG else a + math.log1p(math.exp(b - a))


def _prefix_search(logp: np.ndarray, constraint: Constraint | None, blank: int, beam_width: int,
                   class_cut: float, beam_cut: float) -> tuple[int, ...] | None:
    """The most probable allowed prefix (charset indices), or None when none ends in an accepting state."""
    t_frames, n_classes = logp.shape
    cls = [i + (i >= blank) for i in range(n_classes - 1)]  # charset index -> class id
    rows = logp.tolist()
    keep = (logp >= class_cut) | (logp == logp.max(1, keepdims=True))
    cands = [[i for i in range(n_classes - 1) if k[cls[i]]] for k in keep]
    c = constraint
    lo, hi = (c.min_len, c.max_len) if c else (0, None)
    # prefix -> [log p(prefix, path ends in blank), log p(prefix, ends in its last character), automaton state]
    beams: dict[tuple[int, ...], list] = {(): [0.0, _NEG, c.start if c else 0]}
    for t in range(t_frames):
        lp, left = rows[t], t_frames - 1 - t
        nxt: dict[tuple[int, ...], list] = {}
        for prefix, (pb, pnb, state) in beams.items():
            total = _lse(pb, pnb)
            last = prefix[-1] if prefix else -1
            if c is None or max(c.to_accept[state], lo - len(prefix)) <= left:  # else it can no longer finish
                here = nxt.setdefault(prefix, [_NEG, _NEG, state])
                here[0] = _lse(here[0], total + lp[blank])
                if last >= 0:  # the last character again, no blank between: the same prefix
                    here[1] = _lse(here[1], pnb + lp[cls[last]])
            if hi is not None and len(prefix) >= hi:
                continue
            for i in cands[t]:
                s2 = 0
                if c is not None:
                    s2 = c.table[state][i]
                    if s2 < 0 or max(c.to_accept[s2], lo - len(prefix) - 1) > left:
                        continue  # not allowed, or the rest cannot fit in the frames left
                score = (pb if i == last else total) + lp[cls[i]]  # a repeat needs a blank in between
                if score > _NEG:
                    ext = nxt.setdefault(prefix + (i,), [_NEG, _NEG, s2])
                    ext[1] = _lse(ext[1], score)
        if not nxt:
            return None
        beams = _prune(nxt, beam_width, beam_cut)
    finals = [(_lse(pb, pnb), p) for p, (pb, pnb, s) in beams.items()
              if c is None or (c.accepting[s] and len(p) >= lo)]
    return max(finals)[1] if finals and max(finals)[0] > _NEG else None


def _prune(beams: dict[tuple[int, ...], list], beam_width: int, below_best: float) -> dict[tuple[int, ...], list]:
    scored = [(_lse(v[0], v[1]), p) for p, v in beams.items()]
    top = heapq.nlargest(beam_width, scored)
    floor = top[0][0] - below_best
    return {p: beams[p] for s, p in top if s >= floor}


# ---- forced alignment and confidence ---------------------------------------------------------------------------

def _aligned(probs: np.ndarray, logp: np.ndarray, charset: str, prefix: tuple[int, ...], blank: int) -> Decoded:
    """The reading `prefix` with each character's frames (Viterbi alignment) and probability."""
    if not prefix:
        return Decoded("", float(probs[:, blank].min()), ())
    labels = [i + (i >= blank) for i in prefix]
    states = _viterbi(logp, labels, blank)
    chars = []
    for k, (i, c) in enumerate(zip(prefix, labels)):
        frames = np.flatnonzero(states == 2 * k + 1)
        chars.append((charset[i], float(probs[frames, c].max()), int(frames[0]), int(frames[-1])))
    aligned = np.where(states % 2 == 1, np.asarray([*labels, blank])[states // 2], blank)  # state 2k+1: label k
    best = probs.argmax(1)
    over = np.flatnonzero((best != aligned) & (best != blank))
    overruled = tuple(zip(over.tolist(), aligned[over].tolist()))
    return Decoded("".join(charset[i] for i in prefix), _confidence(tuple(chars), probs, overruled), tuple(chars),
                   overruled)


def _viterbi(logp: np.ndarray, labels: list[int], blank: int) -> np.ndarray:
    """Per frame, the state of the best CTC path for `labels` (state 2k+1 is label k, even states are blanks)."""
    t_frames = logp.shape[0]
    ext = np.full(2 * len(labels) + 1, blank)
    ext[1::2] = labels
    n = len(ext)
    emit = logp[:, ext]
    skip = np.zeros(n, bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]  # a label may follow the previous label directly when they differ
    alpha = np.full(n, _NEG)
    alpha[:2] = emit[0, :2]
    back = np.zeros((t_frames, n), np.int8)
    idx = np.arange(n)
    for t in range(1, t_frames):
        from1 = np.r_[_NEG, alpha[:-1]]
        from2 = np.where(skip, np.r_[_NEG, _NEG, alpha[:-2]], _NEG)
        cand = np.stack([alpha, from1, from2])
        k = cand.argmax(0)
        back[t] = k
        alpha = cand[k, idx] + emit[t]
    s = n - 1 if n == 1 or alpha[n - 1] >= alpha[n - 2] else n - 2
    states = np.empty(t_frames, np.int64)
    for t in range(t_frames - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    return states


# ---- constraint compilation ------------------------------------------------------------------------------------

def _check_probs(probs: np.ndarray, charset: str, blank: int) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != len(charset) + 1:
        raise InputShapeError(f"CTC probabilities must be (frames, {len(charset) + 1}) for the charset {charset!r} "
                              f"plus the blank, got shape {probs.shape}; pass one line's softmax output")
    if not 0 <= blank < probs.shape[1]:
        raise InputShapeError(f"blank index {blank} is outside the {probs.shape[1]} classes")
    return probs


def _check_lengths(min_len: int | None, max_len: int | None, max_chars: int | None) -> tuple[int, int | None]:
    """(min, max) length of a reading: the limits given, checked, and max_len capped at max_chars."""
    lo = 0 if min_len is None else int(min_len)
    if lo < 0 or (max_len is not None and int(max_len) < max(lo, 1)):
        raise PatternError(f"length limits must satisfy 0 <= min_len <= max_len and max_len >= 1 "
                           f"(got min_len {min_len}, max_len {max_len})")
    if max_chars is not None and lo > max_chars:
        raise PatternError(f"min_len {lo}: {_holds(max_chars)}; lower it")
    hi = None if max_len is None else int(max_len)
    return lo, hi if max_chars is None or (hi is not None and hi <= max_chars) else max_chars


def _holds(max_chars: int) -> str:
    return f"a line read by this model holds at most {max_chars} characters (its output frames at its widest input)"


def _allowed_letters(charset: str, allowed: str | None) -> list[bool]:
    if allowed is None:
        return [True] * len(charset)
    if not allowed:
        raise PatternError("allowed characters: none given (an empty string); give the characters a reading may "
                           "use, or leave them out")
    extra = sorted(set(allowed) - set(charset))
    if extra:
        raise PatternError(f"allowed characters {allowed!r}: {extra} are not in the model's charset {charset!r}; "
                           f"allow only characters it knows")
    return [ch in allowed for ch in charset]


def _pattern_automaton(pattern: str, charset: str, letters: list[bool], max_chars: int | None
                       ) -> tuple[tuple[tuple[int, ...], ...], tuple[bool, ...], int]:
    """The pattern's DFA restricted to the allowed charset letters: (table, accepting, start), states numbered
    in breadth-first order from the start."""
    import interegular

    try:
        fsm = _parsed(pattern, max_chars).to_fsm()
    except (interegular.InvalidSyntax, interegular.Unsupported) as e:
        raise PatternError(f"pattern {pattern!r} uses a feature the decoder does not support ({e or 'syntax'}); "
                           f"{_SUPPORTED}") from None
    symbols = [fsm.alphabet[ch] for ch in charset]
    number, order = {fsm.initial: 0}, [fsm.initial]
    rows: list[tuple[int, ...]] = []
    for state in order:  # grows while we walk it
        moves = fsm.map.get(state, {})
        row = []
        for ok, sym in zip(letters, symbols):
            nxt = moves.get(sym) if ok else None
            if nxt is not None and nxt not in number:
                number[nxt] = len(order)
                order.append(nxt)
            row.append(-1 if nxt is None else number[nxt])
        rows.append(tuple(row))
    return tuple(rows), tuple(s in fsm.finals for s in order), 0


def _parsed(pattern: str, max_chars: int | None) -> Any:
    """The pattern parsed by interegular, refused when Python would read it otherwise (lookarounds) or when its
    readings cannot fit (max_chars) or its automaton would be huge (bounded repeats past MAX_PATTERN_CHARS)."""
    import interegular

    if not pattern:
        raise PatternError("the pattern is empty; give one (e.g. '\\d{6}') or leave it out")
    try:  # Python's parser says clearly what is wrong and where
        re.compile(pattern)
    except re.error as e:
        raise PatternError(f"pattern {pattern!r} is not a valid regular expression: {e}") from None
    if _LOOKAROUND.search(pattern):
        raise PatternError(f"pattern {pattern!r} uses a lookahead or lookbehind, which the decoder does not "
                           f"support; {_SUPPORTED}")
    try:
        parsed = interegular.parse_pattern(pattern)
        shortest, longest = parsed.lengths
    except (interegular.InvalidSyntax, interegular.Unsupported) as e:
        raise PatternError(f"pattern {pattern!r} uses a feature the decoder does not support ({e or 'syntax'}); "
                           f"{_SUPPORTED}") from None
    if max_chars is not None and shortest > max_chars:
        raise PatternError(f"pattern {pattern!r} needs at least {shortest} characters, but {_holds(max_chars)}")
    if longest is not None and longest > MAX_PATTERN_CHARS:
        raise PatternError(f"pattern {pattern!r} allows readings of up to {longest} characters (its automaton would "
                           f"have as many states); bound its repeats to {MAX_PATTERN_CHARS} or fewer, or use + or *")
    return parsed


def _distances_to_accept(table: tuple[tuple[int, ...], ...], accepting: tuple[bool, ...]) -> tuple[int, ...]:
    """Per state, the fewest characters to an accepting state (-1: none reachable)."""
    dist = [0 if a else -1 for a in accepting]
    changed = True
    while changed:
        changed = False
        for s, row in enumerate(table):
            best = min((dist[n] + 1 for n in row if n >= 0 and dist[n] >= 0), default=-1)
            if best >= 0 and (dist[s] < 0 or best < dist[s]):
                dist[s], changed = best, True
    return tuple(dist)


def _fits_lengths(table: tuple[tuple[int, ...], ...], accepting: tuple[bool, ...], start: int, lo: int,
                  hi: int | None) -> bool:
    """Whether some accepted reading has lo..hi characters. Past lo + (number of states) characters a longer
    match implies a shorter one at or above lo (pumping), so the walk stops there."""
    bound = lo + len(table) if hi is None else min(hi, lo + len(table))
    states = {start}
    for length in range(bound + 1):
        if length >= lo and any(accepting[s] for s in states):
            return True
        states = {n for s in states for n in table[s] if n >= 0}
        if not states:
            return False
    return False
