"""A KV-cached, batched generation engine for agent episodes.

An agent episode is one growing conversation: every step appends an observation and the agent's
answer. Recomputing the whole conversation at every step costs O(step) per step; this engine keeps
each episode's KV cache between calls instead, so a step pays only for its new tokens (what vLLM's
automatic prefix caching does on a GPU):

- **Prefix caching.** The engine holds up to ``max_rows`` sequences. A request (a whole conversation
  as token ids) takes the row whose cached tokens share the longest prefix with it — the same episode
  one step earlier, or at least the shared system prompt of a finished one — and only the rest is
  prefilled. Nothing has to tell the engine when an episode starts or ends.
- **Ragged batching.** Rows have their own lengths; one forward serves all rows of a call with a
  4D attention mask (each row sees its own columns), so episodes at different steps batch together.
- **Constrained actions.** Where the environment lists admissible commands, the action is decoded
  through a prefix trie of their tokens: the student can only write a command that exists, and
  tokens that the trie forces cost no decision (they are fed several at a time).

A completion is ``<prefix> reason \\n<action marker> action``: the reason is free text ending at
the first newline (or after ``max_reason_tokens``), the action marker is forced, then the action is
decoded (constrained or free) up to the end of the turn.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers.cache_utils import Cache, CacheLayerMixin

# ---------------------------------------------------------------- trie over token sequences

END = -1  # trie key for "the action may end here"


class TokenTrie:
    """Token sequences of the admissible actions; ``END`` marks where one is complete."""

    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        self.root: dict[int, Any] = {}
        for seq in sequences:
            node = self.root
            for t in seq:
                node = node.setdefault(int(t), {})
            node[END] = {}

    @staticmethod
    def forced(node: dict[int, Any]) -> list[int]:
        """Tokens the trie forces from ``node`` (a chain of single children), not past an END."""
        out = []
        while len(node) == 1:
            (tok,) = node
            if tok == END:
                break
            out.append(tok)
            node = node[tok]
        return out


# ---------------------------------------------------------------- attention

GQA_SDPA = "leap_gqa_sdpa"


def _gqa_sdpa(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except that several masked query tokens of a grouped-query model
    go to torch's SDPA with ``enable_gqa`` instead of copying each key/value head per query head
    (transformers does that copy wherever a mask is given, for CUDA's sake). The engine always gives a
    mask; on a CPU the copy and the wider attention took 2-4x the time (SmolLM2, 16 rows, 1000 cached
    tokens, 3-80 new ones)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if query.shape[2] == 1 or groups == 1 or attention_mask is None or query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous(), None


def _use_gqa_sdpa(model: Any) -> None:
    """Switch an SDPA model to :func:`_gqa_sdpa` (registered once; the masks stay SDPA's)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return
    AttentionInterface.register(GQA_SDPA, _gqa_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(GQA_SDPA, sdpa_mask)
    model.set_attn_implementation(GQA_SDPA)


# ---------------------------------------------------------------- the KV cache


class _Buffer:
    """Per-layer K/V storage of shape [rows, kv_heads, capacity, head_dim]; each row has its own length.

    Before every forward the engine sets ``rows`` (the slice of rows in the batch), ``start_list`` (each
    row's length = the column its first new token goes to) and ``kv_len`` (columns the attention reads).
    """

    def __init__(self, n_layers: int, n_rows: int) -> None:
        self.n_layers = n_layers
        self.n_rows = n_rows
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.capacity = 0
        self.rows = slice(0, 0)
        self.start_list: list[int] = []
        self.kv_len = 0

    def ensure(self, needed: int, like: torch.Tensor) -> None:
        if needed <= self.capacity and self.keys[0] is not None:
            return
        cap = max(256, self.capacity)
        while cap < needed:
            cap *= 2
        _, heads, _, dim = like.shape
        for i in range(self.n_layers):
            for store in (self.keys, self.values):
                new = like.new_zeros((self.n_rows, heads, cap, dim))
                old = store[i]
                if old is not None:
                    new[:, :, : old.shape[2]] = old
                store[i] = new
        self.capacity = cap

    def write(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.ensure(self.kv_len, key)
        n_new = key.shape[2]
        k = self.keys[layer]
        v = self.values[layer]
        assert k is not None and v is not None
        # One slice copy per row: torch's CPU scatter_ on bfloat16 took ~10 ms for one new token of
        # 16 rows (1000x its float32 time), half of every decoding step; slice copies take microseconds.
        for r, start in enumerate(self.start_list, start=self.rows.start):
            k[r, :, start : start + n_new] = key[r - self.rows.start]
            v[r, :, start : start + n_new] = value[r - self.rows.start]
        return k[self.rows, :, : self.kv_len], v[self.rows, :, : self.kv_len]

    def swap(self, a: int, b: int) -> None:
        for store in (self.keys, self.values):
            for t in store:
                if t is not None:
                    t[[a, b]] = t[[b, a]]


class _Layer(CacheLayerMixin):
    is_compileable = False
    is_sliding = False

    def __init__(self, buffer: _Buffer, index: int) -> None:
        super().__init__()
        self.buffer = buffer
        self.index = index

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.buffer.write(self.index, key_states, value_states)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.buffer.kv_len, 0

    def get_seq_length(self) -> int:
        return self.buffer.kv_len

    def get_max_length(self) -> int:
        return -1


class _RaggedCache(Cache):
    def __init__(self, buffer: _Buffer) -> None:
        super().__init__(layers=[_Layer(buffer, i) for i in range(buffer.n_layers)])


# ---------------------------------------------------------------- requests and results


@dataclass
class Request:
    """One conversation to continue: ``prompt_ids`` ends with the assistant header (and any forced
    prefix such as ``Reason:``); ``actions``: the admissible commands (None: free text)."""

    prompt_ids: list[int]
    actions: Sequence[str] | None = None
    banned: Sequence[str] = ()


@dataclass
class Completion:
    text: str  # the generated text (after the prompt)
    token_ids: list[int]
    prefilled: int  # prompt tokens this call computed (the rest came from the cache)
    cached: int  # prompt tokens reused from the cache
    reason_truncated: bool = False
    logprob: float = 0.0  # sum of log-probabilities of the chosen tokens (constrained: renormalised)


@dataclass
class EngineStats:
    calls: int = 0
    sequences: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    forwards: int = 0
    seconds: float = 0.0
    per_call: list[dict[str, float]] = field(default_factory=list)

    @property
    def cache_hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


_REASON, _ACTION, _DONE = 0, 1, 2
_Scores = Any  # (allowed token ids | None) -> their scores (all of the vocabulary for None)


@dataclass
class _RowState:
    req: Request
    trie: TokenTrie | None
    feed: list[int]  # tokens to feed at the next forward
    phase: int = _REASON
    out: list[int] = field(default_factory=list)  # generated tokens (fed or not)
    node: dict[int, Any] | None = None  # trie position (action phase, constrained)
    reason_len: int = 0
    truncated: bool = False
    logprob: float = 0.0


# ---------------------------------------------------------------- the engine


class Engine:
    """Generate agent turns for batches of conversations, keeping their KV caches between calls.

    ``action_marker``: the text that starts the action line (``"\\nAction:"``); ``max_reason_tokens``
    caps the free-text reason, ``max_action_tokens`` an unconstrained action. ``temperature`` 0 is
    greedy. Works with any Hugging Face decoder whose attention accepts a 4D mask (Llama, Qwen,
    Mistral, ...).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_rows: int = 16,
        action_marker: str = "\nAction:",
        max_reason_tokens: int = 48,
        max_action_tokens: int = 48,
        temperature: float = 0.0,
        seed: int | None = None,
        prefill_chunk: int = 512,
        prefix_cache: bool = True,
    ) -> None:
        _use_gqa_sdpa(model)
        self.model = model
        self.tok = tokenizer
        self.decoder = model.get_decoder()
        self.lm_head = model.get_output_embeddings()
        cfg = model.config
        self.max_rows = max_rows
        self.buffer = _Buffer(cfg.num_hidden_layers, max_rows)
        self.cache = _RaggedCache(self.buffer)
        self.rows: list[list[int]] = [[] for _ in range(max_rows)]  # tokens held by each row
        self.max_reason_tokens = max_reason_tokens
        self.max_action_tokens = max_action_tokens
        self.temperature = temperature
        self.prefill_chunk = prefill_chunk
        self.prefix_cache = prefix_cache  # False: every call recomputes every prompt (for comparison)
        self.generator = torch.Generator().manual_seed(seed if seed is not None else 0)
        self.device = next(model.parameters()).device
        self.stats = EngineStats()
        self.end_id = _end_of_turn_id(tokenizer)
        self.marker_ids = self._ids(action_marker)
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        # Tokens that end a line: the reason ends at the first one (replaced by the marker's newline).
        self._newline = torch.zeros(self.lm_head.weight.shape[0], dtype=torch.bool)
        for i, piece in enumerate(vocab):
            if piece is not None and ("\n" in tokenizer.convert_tokens_to_string([piece])):
                self._newline[i] = True
        self._trie_cache: dict[tuple[str, ...], TokenTrie] = {}
        # Scoring only the allowed tokens is exact for a plain linear head (no bias, scaling or capping).
        self._partial_head = (
            type(self.lm_head) is torch.nn.Linear
            and self.lm_head.bias is None
            and not getattr(cfg, "final_logit_softcapping", None)
            and getattr(cfg, "logit_scale", None) in (None, 1.0)
        )
        # transformers 5 renamed the decoder's `past_key_values` argument to `cache`.
        names = inspect.signature(self.decoder.forward).parameters
        self._cache_kw = "cache" if "cache" in names else "past_key_values"

    # ------------------------------------------------------------ public

    def encode(self, text: str) -> list[int]:
        return self._ids(text)

    @torch.inference_mode()
    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        out: list[Completion] = []
        for start in range(0, len(requests), self.max_rows):
            out += self._generate(list(requests[start : start + self.max_rows]))
        return out

    def reset(self) -> None:
        """Forget every cached sequence (e.g. after the model's weights changed)."""
        self.rows = [[] for _ in range(self.max_rows)]

    @torch.inference_mode()
    def score(
        self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """Log-probability of each token of ``completions[k]`` after ``prompts[k]`` (teacher forcing),
        under the model's full next-token distribution (no trie: how likely the model finds the text).

        Batched like :meth:`generate` and through the same prefix cache: scoring the steps of one
        episode in order pays only for what each adds (the history is shared)."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        out: list[list[float]] = []
        for start in range(0, len(prompts), self.max_rows):
            out += self._score(
                list(prompts[start : start + self.max_rows]), list(completions[start : start + self.max_rows])
            )
        return out

    def end_of_turn(self) -> int:
        """The token that ends an assistant turn (what the engine feeds and writes last)."""
        return self.end_id

    # ------------------------------------------------------------ internals

    def _ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def _trie(self, actions: Sequence[str]) -> TokenTrie:
        key = tuple(actions)
        trie = self._trie_cache.get(key)
        if trie is None:
            # Each action as the model would write it after the marker, then the end of the turn.
            seqs = [[*self._ids(" " + a.strip()), self.end_id] for a in actions if a.strip()]
            trie = TokenTrie(seqs)
            if len(self._trie_cache) > 4096:
                self._trie_cache.clear()
            self._trie_cache[key] = trie
        return trie

    def _assign(self, requests: list[Request]) -> tuple[list[int], list[int]]:
        """(row, cached prefix length) of each request; the rows used are exactly 0..n-1.

        A request takes the row sharing its longest token prefix (its own episode one step earlier,
        or a finished episode's system prompt); rows no request takes are free to reuse.
        """
        n = len(requests)
        reqs = [np.asarray(r.prompt_ids, dtype=np.int64) for r in requests]
        rows = [np.asarray(r, dtype=np.int64) for r in self.rows]
        lcp = np.zeros((n, self.max_rows), dtype=np.int64)
        for i, a in enumerate(reqs):
            for j, b in enumerate(rows):
                m = min(len(a), len(b))
                if m:
                    diff = np.nonzero(a[:m] != b[:m])[0]
                    lcp[i, j] = diff[0] if len(diff) else m
        pairs = sorted(
            ((int(lcp[i, j]), -j, i, j) for i in range(n) for j in range(self.max_rows)), reverse=True
        )
        row_of = [-1] * n
        taken: set[int] = set()
        for _, _, i, j in pairs:
            if row_of[i] < 0 and j not in taken:
                row_of[i] = j
                taken.add(j)
        cached = [int(lcp[i, row_of[i]]) for i in range(n)]
        # A batch is the contiguous slice of rows [0, n): move rows taken beyond it into free slots.
        free = [k for k in range(n) if k not in taken]
        for i in range(n):
            j = row_of[i]
            if j >= n:
                k = free.pop()
                self.buffer.swap(k, j)
                self.rows[k], self.rows[j] = self.rows[j], self.rows[k]
                row_of[i] = k
        return row_of, cached

    def _forward(self, lo: int, feeds: list[list[int]], *, every_position: bool = False) -> torch.Tensor:
        """Feed ``feeds[r]`` to rows lo..lo+len(feeds); return each row's last hidden state [rows, d]
        (``every_position``: the hidden state of every fed position, [rows, width, d])."""
        n_rows = len(feeds)
        width = max(len(f) for f in feeds)
        assert width > 0
        pad = self.end_id
        ids = torch.full((n_rows, width), pad, dtype=torch.long)
        for r, f in enumerate(feeds):
            if f:
                ids[r, : len(f)] = torch.tensor(f, dtype=torch.long)
        starts = torch.tensor([len(self.rows[lo + r]) for r in range(n_rows)], dtype=torch.long)
        pos = starts[:, None] + torch.arange(width)[None, :]
        kv_len = int(pos.max()) + 1
        # Row r's query at position p sees its own columns 0..p (earlier turns, then this chunk).
        mask = torch.arange(kv_len)[None, None, :] <= pos[:, :, None]
        b = self.buffer
        b.rows, b.start_list, b.kv_len = slice(lo, lo + n_rows), starts.tolist(), kv_len
        hidden = self.decoder(
            input_ids=ids.to(self.device),
            attention_mask=mask[:, None].to(self.device),
            position_ids=pos.to(self.device),
            use_cache=True,
            **{self._cache_kw: self.cache},
        ).last_hidden_state
        self.stats.forwards += 1
        for r, f in enumerate(feeds):
            self.rows[lo + r].extend(f)
        if every_position:
            return hidden
        last = torch.tensor([max(len(f), 1) - 1 for f in feeds], device=hidden.device)
        return hidden[torch.arange(n_rows, device=hidden.device), last]

    def _prefill(self, suffixes: list[list[int]]) -> torch.Tensor:
        """Feed each row's new prompt tokens; return the last hidden state of every row [n, d]."""
        n = len(suffixes)
        hidden: list[torch.Tensor | None] = [None] * n
        # One batched forward over the short suffixes (the new observations of running episodes);
        # what is left of long ones (new episodes) is fed row by row after it.
        lens = sorted(len(s) for s in suffixes)
        short = max(lens[len(lens) // 2] * 2, 8)
        first = [s[: min(len(s), short)] for s in suffixes]
        h = self._forward(0, first)
        rest = [s[len(f) :] for s, f in zip(suffixes, first, strict=True)]
        for r in range(n):
            if not rest[r]:
                hidden[r] = h[r]
            while rest[r]:
                chunk, rest[r] = rest[r][: self.prefill_chunk], rest[r][self.prefill_chunk :]
                hidden[r] = self._forward(r, [chunk])[0]
        return torch.stack([x for x in hidden if x is not None])

    def _choose(self, scores: _Scores, allowed: list[int] | None) -> tuple[int, float]:
        sub = scores(allowed)
        logp = torch.log_softmax(sub.float(), dim=-1)
        if self.temperature > 0:
            probs = torch.softmax(sub.float() / self.temperature, dim=-1).cpu()
            k = int(torch.multinomial(probs, 1, generator=self.generator))
        else:
            k = int(torch.argmax(sub))
        tok = allowed[k] if allowed is not None else k
        return tok, float(logp[k])

    def _scores(self, hidden: torch.Tensor, states: list[_RowState]) -> list[_Scores]:
        """Next-token scores for each row: the full vocabulary where the row writes free text (one
        batched product), only the allowed tokens where a trie constrains it (a few rows of the LM
        head instead of all 49k: the LM head is a fifth of a small model's compute)."""
        full_rows = [
            k for k, st in enumerate(states) if not (self._partial_head and st.phase == _ACTION and st.trie)
        ]
        full = self.lm_head(hidden[full_rows]) if full_rows else None
        where = {k: i for i, k in enumerate(full_rows)}
        weight = self.lm_head.weight

        def make(k: int) -> _Scores:
            if k in where:
                assert full is not None
                row = full[where[k]]
                return lambda allowed: (
                    row if allowed is None else row[torch.tensor(allowed, device=row.device)]
                )
            h = hidden[k]
            return lambda allowed: weight[torch.tensor(allowed, device=h.device)] @ h

        return [make(k) for k in range(len(states))]

    def _step(self, st: _RowState, logits: _Scores) -> None:
        """Choose this row's next token(s) from ``logits`` and queue what must be fed."""
        if st.phase == _REASON:
            tok, lp = self._choose(logits, None)
            st.logprob += lp
            ends = bool(self._newline[tok]) or tok == self.end_id
            if not ends and st.reason_len >= self.max_reason_tokens:
                ends, st.truncated = True, True
            if ends:  # the reason is over: the action marker (which starts with the newline) is forced
                st.phase = _ACTION
                st.out += self.marker_ids
                st.feed = list(self.marker_ids)
                if st.trie is not None:
                    st.node = st.trie.root
                    forced = TokenTrie.forced(st.node)
                    self._walk(st, forced)
                    st.feed += forced
                return
            st.reason_len += 1
            st.out.append(tok)
            st.feed = [tok]
            return
        if st.trie is not None:
            assert st.node is not None
            allowed = [t for t in st.node if t != END]
            if END in st.node:
                allowed.append(self.end_id)
            tok, lp = self._choose(logits, allowed)
            st.logprob += lp
            if tok == self.end_id:
                st.phase, st.feed = _DONE, []
                return
            self._walk(st, [tok])
            forced = TokenTrie.forced(st.node)
            self._walk(st, forced)
            if st.node is not None and set(st.node) == {END}:  # the only way on is the end of the turn
                st.phase, st.feed = _DONE, []
                return
            st.feed = [tok, *forced]
            return
        tok, lp = self._choose(logits, None)
        st.logprob += lp
        n_action = len(st.out) - st.reason_len - len(self.marker_ids)
        if tok == self.end_id or bool(self._newline[tok]) or n_action >= self.max_action_tokens:
            st.phase, st.feed = _DONE, []
            return
        st.out.append(tok)
        st.feed = [tok]

    def _walk(self, st: _RowState, toks: list[int]) -> None:
        for t in toks:
            assert st.node is not None
            st.node = st.node[t]
            st.out.append(t)

    def _generate(self, requests: list[Request]) -> list[Completion]:
        t0 = time.perf_counter()
        n = len(requests)
        if not self.prefix_cache:
            self.reset()
        row_of, cached = self._assign(requests)
        by_row: list[Request] = [requests[0]] * n
        suffixes: list[list[int]] = [[] for _ in range(n)]
        for i, req in enumerate(requests):
            r = row_of[i]
            keep = min(cached[i], len(req.prompt_ids) - 1)  # recompute at least the last token's logits
            cached[i] = keep
            del self.rows[r][keep:]
            by_row[r] = req
            suffixes[r] = list(req.prompt_ids[keep:])
        hidden = self._prefill(suffixes)
        states = []
        for req in by_row:
            actions = req.actions
            if actions and req.banned:
                actions = [a for a in actions if a not in set(req.banned)] or actions
            states.append(_RowState(req=req, trie=self._trie(actions) if actions else None, feed=[]))
        for r, scores in enumerate(self._scores(hidden, states)):
            self._step(states[r], scores)
        while True:
            live = [r for r, st in enumerate(states) if st.feed]
            if not live:
                break
            lo, hi = live[0], live[-1] + 1
            hidden = self._forward(lo, [states[r].feed for r in range(lo, hi)])
            for k, scores in enumerate(self._scores(hidden, states[lo:hi])):
                st = states[lo + k]
                if st.feed:
                    st.feed = []
                    self._step(st, scores)
        results = []
        for i, req in enumerate(requests):
            st = states[row_of[i]]
            results.append(
                Completion(
                    text=self.tok.decode(st.out, skip_special_tokens=True),
                    token_ids=list(st.out),
                    prefilled=len(req.prompt_ids) - cached[i],
                    cached=cached[i],
                    reason_truncated=st.truncated,
                    logprob=st.logprob,
                )
            )
        s = self.stats
        s.calls += 1
        s.sequences += n
        s.prompt_tokens += sum(len(r.prompt_ids) for r in requests)
        s.cached_tokens += sum(cached)
        s.prefilled_tokens += sum(c.prefilled for c in results)
        s.generated_tokens += sum(len(st.out) for st in states)
        dt = time.perf_counter() - t0
        s.seconds += dt
        s.per_call.append({"n": n, "prefilled": sum(c.prefilled for c in results), "s": dt})
        return results

    def _score(self, prompts: list[Sequence[int]], completions: list[Sequence[int]]) -> list[list[float]]:
        n = len(prompts)
        full = [[*p, *c] for p, c in zip(prompts, completions, strict=True)]
        for k, p in enumerate(prompts):
            if not p:
                raise ValueError(f"request {k}: an empty prompt (the first token has no context to score)")
        if not self.prefix_cache:
            self.reset()
        row_of, cached = self._assign([Request(f) for f in full])
        suffix: list[list[int]] = [[] for _ in range(n)]
        first: list[int] = [0] * n  # index in the suffix whose hidden state predicts completion token 0
        for i, (p, f) in enumerate(zip(prompts, full, strict=True)):
            r = row_of[i]
            keep = min(cached[i], len(p) - 1)  # the last prompt token is fed: its logits score token 0
            del self.rows[r][keep:]
            suffix[r] = f[keep:]
            first[r] = len(p) - 1 - keep
        # Hidden states of the positions that predict a completion token, per row.
        wanted: list[list[torch.Tensor]] = [[] for _ in range(n)]
        done = [0] * n  # suffix tokens fed so far
        while any(done[r] < len(suffix[r]) for r in range(n)):
            feeds = [suffix[r][done[r] : done[r] + self.prefill_chunk] for r in range(n)]
            lo = next(r for r in range(n) if feeds[r])
            hi = max(r for r in range(n) if feeds[r]) + 1
            hidden = self._forward(lo, feeds[lo:hi], every_position=True)
            for r in range(lo, hi):
                a, b = done[r], done[r] + len(feeds[r])
                # Positions first..len-2 of the suffix predict the completion (the last one predicts
                # what follows the completion).
                lo_p, hi_p = max(a, first[r]), min(b, len(suffix[r]) - 1)
                if lo_p < hi_p:
                    wanted[r].append(hidden[r - lo, lo_p - a : hi_p - a])
                done[r] = b
        results: list[list[float]] = []
        for i, comp in enumerate(completions):
            r = row_of[i]
            if not comp:
                results.append([])
                continue
            h = torch.cat(wanted[r])
            logp = torch.log_softmax(self.lm_head(h).float(), dim=-1)
            target = torch.tensor(list(comp), device=logp.device)
            results.append(logp[torch.arange(len(comp), device=logp.device), target].tolist())
        self.stats.prompt_tokens += sum(len(f) for f in full)
        self.stats.cached_tokens += sum(min(cached[i], len(prompts[i]) - 1) for i in range(n))
        return results


def _end_of_turn_id(tok: Any) -> int:
    vocab = tok.get_vocab()
    for t in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        if t in vocab:
            return int(vocab[t])
    return int(tok.eos_token_id)
