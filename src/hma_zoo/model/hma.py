"""The HMA world model: per-embodiment action stems -> shared spatial-temporal trunk -> heads.

A plain ``nn.Module`` (no Lightning inside). Conventions:

* ``tokens``: ``vq`` ids ``int64 [B, T, h, w]``; ``mar`` latents ``float [B, T, h, w, c]``.
* ``actions``: raw ``float [B, T, A_max]``; row ``t`` is the chunk of control steps executed *after* frame ``t``
  (zero-padded to the widest embodiment). Frame ``t`` is therefore conditioned on row ``t - 1``; frame 0 sees
  the learned "unknown action" token. The policy head at frame ``t`` predicts row ``t`` from frames ``<= t`` and
  rows ``< t`` only, so a policy can never read the action it predicts (causality, tested).
* ``embodiment``: names (``list[str]``) or indices ``LongTensor [B]``; every sample goes through its own stem and
  head, so a batch may mix robots.
* ``action_mask`` ``bool [B, T]``: True hides that row; it is replaced by the learned unknown-action token
  *before* any conditioning path (add, cross-attention, adaLN, concat) sees it, so a hidden action cannot leak.

Reference: Wang et al., arXiv 2502.04296 (HMA). Fixed here relative to the original code: per-sample routing,
correct cross-attention, action masking on every path, temperature, incremental MAR unmasking, a KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from einops import rearrange
from torch import nn

from hma_zoo import hub
from hma_zoo.configs import EmbodimentSpec, HMAConfig
from hma_zoo.model.heads import DiffusionActionHead, DiffusionTokenHead, FactorizedHead, RegressionActionHead
from hma_zoo.model.stems import ActionNorm, ActionStem, FactorizedEmbedding, PatchEmbed, route, unpatchify
from hma_zoo.model.trunk import KVCache, Trunk

Embodiment = Sequence[str] | torch.Tensor


class HMA(nn.Module, hub.ZooHubMixin):
    """Heterogeneous Masked Autoregression world model; build it with :func:`hma_zoo.create_model`.

    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` come from huggingface_hub's mixin
    (:class:`hma_zoo.hub.ZooHubMixin`), in the zoo's format (``config.json`` + ``model.safetensors``, never pickled).
    """

    hub_kind = "hma"

    def __init__(self, config: HMAConfig) -> None:
        super().__init__()
        self.config = config
        tok, trunk, cond = config.tokens, config.trunk, config.conditioning
        d = trunk.d_model
        self.num_tokens = tok.tokens_per_frame
        if tok.kind == "vq":
            self.token_embed: nn.Module = FactorizedEmbedding(tok.factor_sizes, d, group=tok.group)
        else:
            self.token_embed = PatchEmbed(tok.latent_channels, tok.patch_size, d)
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.pos = nn.Parameter(torch.randn(self.num_tokens, d) * 0.02)
        self.num_action_tokens = cond.num_action_tokens if cond.uses_concat or cond.mode == "cross_attention" else 0
        n_act = self.num_action_tokens
        self.action_pos = nn.Parameter(torch.randn(n_act, d) * 0.02) if n_act else None

        self.action_norms = nn.ModuleList(ActionNorm(e) for e in config.embodiments)
        hidden = config.stem_hidden or d
        if cond.mode != "none":
            self.action_stems: nn.ModuleList | None = nn.ModuleList(
                ActionStem(e, d, hidden) for e in config.embodiments
            )
            self.unknown_action = nn.Parameter(torch.zeros(d))
        else:
            self.action_stems = None
        self.trunk = Trunk(trunk, cond)

        if tok.kind == "vq":
            self.video_head: nn.Module = FactorizedHead(d, tok.factor_sizes, config.label_smoothing, group=tok.group)
        else:
            self.video_head = DiffusionTokenHead(d, tok.patch_dim, self.num_tokens, config.diffusion)
        self.action_heads: nn.ModuleList | None = None
        if config.predict_actions and config.embodiments:
            a_max = config.max_chunk_dim
            if tok.kind == "vq":
                heads = [RegressionActionHead(e, d, a_max) for e in config.embodiments]
            else:
                heads = [DiffusionActionHead(e, d, a_max, config.diffusion) for e in config.embodiments]
            self.action_heads = nn.ModuleList(heads)
        self._init_weights()

    def _init_weights(self) -> None:
        from hma_zoo.diffusion import DiffusionMLP

        keep = {id(m) for d in self.modules() if isinstance(d, DiffusionMLP) for m in d.modules()}
        for module in self.modules():
            if isinstance(module, nn.Linear) and id(module) not in keep:
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Residual branches start small so a deep trunk starts close to the identity.
        for block in self.trunk.blocks:
            for proj in (block.spatial.proj, block.temporal.proj, block.mlp.fc2):
                nn.init.xavier_uniform_(proj.weight, gain=0.1)
            if block.adaln is not None:
                nn.init.zeros_(block.adaln.out.weight)

    # ------------------------------------------------------------------ helpers
    @property
    def kind(self) -> str:
        return self.config.tokens.kind

    def embodiment_index(self, embodiment: Embodiment, batch: int) -> torch.Tensor:
        """Names or indices -> ``LongTensor [B]`` of indices into ``config.embodiments`` (on the model's device)."""
        device = self.pos.device
        if isinstance(embodiment, torch.Tensor):
            idx = embodiment.to(device=device, dtype=torch.long).reshape(-1)
        else:
            if isinstance(embodiment, str):
                embodiment = [embodiment] * batch
            names = self.config.embodiment_names
            try:
                idx = torch.tensor([names.index(n) for n in embodiment], device=device, dtype=torch.long)
            except ValueError:
                unknown = sorted(set(embodiment) - set(names))
                raise KeyError(f"unknown embodiment(s) {unknown}; this model knows {list(names)}. "
                               "Add one with model.with_embodiments([...]).") from None
        if idx.numel() == 1 and batch > 1:
            idx = idx.expand(batch)
        if idx.numel() != batch:
            raise ValueError(f"got {idx.numel()} embodiments for a batch of {batch}")
        if self.config.embodiments and (idx.min() < 0 or idx.max() >= len(self.config.embodiments)):
            raise IndexError(f"embodiment index out of range [0, {len(self.config.embodiments)})")
        return idx

    def to_trunk_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Public tokens -> trunk tokens: ``vq`` ``[B,T,h,w]`` -> ``[B,T,S]`` (grouped ``p x p``: ``[B,T,S,p*p]``);
        ``mar`` -> patches ``[B,T,S,P]``."""
        if self.kind == "vq":
            if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise TypeError(f"vq tokens must be integer ids, got {tokens.dtype}")
            vocab = self.config.tokens.vocab_size
            if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
                raise ValueError(f"vq token ids must lie in [0, {vocab}), got [{int(tokens.min())}, "
                                 f"{int(tokens.max())}]; was the data tokenized with this model's tokenizer?")
            p = self.config.tokens.patch_size
            if p > 1:
                return rearrange(tokens.long(), "b t (h p1) (w p2) -> b t (h w) (p1 p2)", p1=p, p2=p)
            return tokens.long().flatten(2)
        if not tokens.is_floating_point():
            raise TypeError(f"mar tokens must be float latents [B,T,h,w,c], got {tokens.dtype}")
        return self.token_embed.patchify(tokens)

    def from_trunk_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_trunk_tokens`."""
        grid, p = self.config.tokens.grid, self.config.tokens.patch_size
        if self.kind == "vq":
            if p > 1:
                return rearrange(x, "b t (h w) (p1 p2) -> b t (h p1) (w p2)", h=grid[0] // p, p1=p, p2=p)
            return x.reshape(*x.shape[:2], *grid)
        return unpatchify(x, grid, p)

    def to_trunk_mask(self, token_mask: torch.Tensor) -> torch.Tensor:
        """A mask on the latent grid ``[B,T,h,w]`` (or already ``[B,T,S]``) -> ``[B,T,S]`` (any per patch)."""
        if token_mask.ndim == 3:
            return token_mask.bool()
        if self.config.tokens.patch_size > 1:
            p = self.config.tokens.patch_size
            b, t, h, w = token_mask.shape
            return token_mask.view(b, t, h // p, p, w // p, p).any(dim=(3, 5)).flatten(2)
        return token_mask.bool().flatten(2)

    def normalize_actions(self, actions: torch.Tensor, emb_idx: torch.Tensor) -> torch.Tensor:
        """Raw ``[B, ..., A_max]`` -> normalised per each sample's embodiment statistics (padding stays 0)."""
        return route(self.action_norms, emb_idx, (actions,), actions.shape[1:], call="normalize")

    def unnormalize_actions(self, actions: torch.Tensor, emb_idx: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, ..., A_max]`` -> raw (padding stays 0)."""
        return route(self.action_norms, emb_idx, (actions,), actions.shape[1:], call="unnormalize")

    # ------------------------------------------------------------------ embeddings
    def embed_video(self, x: torch.Tensor, mask: torch.Tensor | None, corrupt: torch.Tensor | None = None,
                    ) -> torch.Tensor:
        """Trunk tokens (``[B,T,S]`` ids or ``[B,T,S,P]`` patches) -> ``[B,T,S,D]``; masked -> mask token.

        ``corrupt`` ``[B,T,S]`` (``vq`` only): those ids are replaced by uniformly random ids (still visible).
        """
        grouped = self.kind == "vq" and x.ndim == 4  # [B,T,S,G] ids
        if corrupt is not None and self.kind == "vq":
            c = corrupt.unsqueeze(-1) if grouped else corrupt
            x = torch.where(c, torch.randint_like(x, self.config.tokens.vocab_size), x)
        if self.kind == "vq" and mask is not None:
            x = x.masked_fill(mask.unsqueeze(-1) if grouped else mask, 0)  # ids in range; replaced below
        h = self.token_embed(x) if self.kind == "vq" else self.token_embed.proj(x)
        if mask is not None:
            h = torch.where(mask.unsqueeze(-1), self.mask_token.to(h.dtype), h)
        return h + self.pos.to(h.dtype)

    def embed_actions(self, cond_rows: torch.Tensor, cond_unknown: torch.Tensor, emb_idx: torch.Tensor,
                      ) -> torch.Tensor | None:
        """Per-frame action embeddings ``[B,T,D]`` from the raw rows conditioning each frame ``[B,T,A_max]``.

        ``cond_unknown`` ``[B,T]``: rows replaced by the learned unknown-action token; their values are never
        read (they are zeroed before the stem as well).
        """
        if self.action_stems is None:
            return None
        rows = cond_rows.masked_fill(cond_unknown.unsqueeze(-1), 0.0)
        normed = self.normalize_actions(rows, emb_idx)
        d = self.config.trunk.d_model
        emb = route(self.action_stems, emb_idx, (normed,), (*rows.shape[1:-1], d))
        return torch.where(cond_unknown.unsqueeze(-1), self.unknown_action.to(emb.dtype), emb)

    def _run(self, x_img: torch.Tensor, a: torch.Tensor | None, cache: KVCache | None = None,
             commit: bool | int = False, window: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Assemble the spatial sequence (image + action tokens), run the trunk; -> image outputs ``[B,T,S,D]``
        and a per-frame feature ``[B,T,D]`` for the action heads. ``window``: temporal attention span in frames
        (default ``cache.window`` with a cache, else ``trunk.max_frames``); see :class:`~hma_zoo.model.trunk.Trunk`."""
        mode = self.config.conditioning.mode
        ctx = None
        x = x_img
        if a is not None and self.action_pos is not None:
            tokens = a.unsqueeze(2) + self.action_pos.to(a.dtype)
            if mode == "cross_attention":
                ctx = tokens
            else:
                x = torch.cat((x_img, tokens), dim=2)
        h = self.trunk(x, a, ctx, cache=cache, commit=commit, window=window)
        h_img = h[:, :, : self.num_tokens]
        feat = h[:, :, self.num_tokens :].mean(2) if h.shape[2] > self.num_tokens else h_img.mean(2)
        return h_img, feat

    @staticmethod
    def shift_actions(actions: torch.Tensor, unknown: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows after each frame -> rows conditioning each frame: frame ``t`` gets row ``t-1``; frame 0 unknown."""
        rows = torch.cat((torch.zeros_like(actions[:, :1]), actions[:, :-1]), dim=1)
        unk = torch.cat((torch.ones_like(unknown[:, :1]), unknown[:, :-1]), dim=1)
        return rows, unk

    # ------------------------------------------------------------------ forward / loss
    def forward(
        self,
        tokens: torch.Tensor,
        actions: torch.Tensor | None,
        embodiment: Embodiment,
        token_mask: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        corrupt: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced pass over a sequence of any length.

        Every frame attends to at most ``trunk.max_frames`` frames (itself included) at every layer, so a window
        longer than ``max_frames`` is exactly the computation that the KV cache of
        :class:`~hma_zoo.sampling.FrameStepper` performs on a rollout of that length (frame 0 with the unknown
        action, later frames with their real actions).

        Args:
            tokens: ``[B,T,h,w]`` ids or ``[B,T,h,w,c]`` latents, any ``T >= 1``.
            actions: raw ``[B,T,A_max]`` (``None`` = all unknown).
            embodiment: names or indices, one per sample.
            token_mask: ``bool [B,T,h,w]`` (or ``[B,T,S]``), True = hidden.
            action_mask: ``bool [B,T]``, True = that row is hidden (no path can read it).
            corrupt: ``bool [B,T,h,w]`` (``vq``): ids replaced by random ones but left visible.

        Returns:
            ``{"h": [B,T,S,D] image outputs, "feat": [B,T,D] per-frame feature, "video": vq logits [B,T,S,sum F]
            or mar conditions z [B,T,S,D]}``.
        """
        b, t = tokens.shape[:2]
        emb_idx = self.embodiment_index(embodiment, b)
        x = self.to_trunk_tokens(tokens)
        mask = self.to_trunk_mask(token_mask) if token_mask is not None else None
        corrupt_s = self.to_trunk_mask(corrupt) if corrupt is not None else None
        x_img = self.embed_video(x, mask, corrupt_s)
        a = None
        if self.action_stems is not None:
            if actions is None:
                actions = x_img.new_zeros(b, t, self.config.max_chunk_dim)
                unknown = torch.ones(b, t, dtype=torch.bool, device=x_img.device)
            else:
                unknown = action_mask.bool() if action_mask is not None else torch.zeros(
                    b, t, dtype=torch.bool, device=x_img.device)
            rows, unk = self.shift_actions(actions.to(x_img.dtype), unknown)
            a = self.embed_actions(rows, unk, emb_idx)
        h, feat = self._run(x_img, a)
        video = self.video_head(h) if self.kind == "vq" else self.video_head.condition(h)
        return {"h": h, "feat": feat, "video": video, "emb_idx": emb_idx}

    def compute_loss(
        self,
        tokens: torch.Tensor,
        actions: torch.Tensor | None,
        embodiment: Embodiment,
        token_mask: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        action_valid: torch.Tensor | None = None,
        corrupt: torch.Tensor | None = None,
        token_weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training losses: video loss on masked tokens only, plus the weighted action (policy) loss.

        ``token_weight`` ``[B,T,S]`` (optional): per-token weights of the video term of ``loss`` (a weighted mean
        over the masked tokens), e.g. ``1 + w * changed_tokens(tokens)``; the reported ``video_loss`` and
        ``video_loss_per_sample`` stay unweighted so runs with and without weights compare.

        In training mode, whole samples have their actions dropped (set unknown) with probability
        ``conditioning.action_dropout``, which teaches the null-action branch used by classifier-free guidance.

        Returns:
            dict with ``loss``, ``video_loss``, ``action_loss``, ``token_acc`` (``vq``), ``video_loss_per_sample``
            ``[B]`` and ``masked_tokens`` (count).
        """
        b, t = tokens.shape[:2]
        device = tokens.device
        valid = action_valid.bool() if action_valid is not None else torch.ones(b, t, dtype=torch.bool, device=device)
        hidden = (action_mask.bool() if action_mask is not None else torch.zeros_like(valid)) | ~valid
        p_drop = self.config.conditioning.action_dropout
        if self.training and p_drop > 0 and self.action_stems is not None:
            hidden = hidden | (torch.rand(b, 1, device=device) < p_drop)
        out = self.forward(tokens, actions, embodiment, token_mask, hidden, corrupt)
        mask = self.to_trunk_mask(token_mask)
        target = self.to_trunk_tokens(tokens)
        sample_idx = torch.arange(b, device=device).view(b, 1, 1).expand_as(mask)[mask]
        counts = mask.flatten(1).sum(1).clamp_min(1)
        result: dict[str, torch.Tensor] = {}
        if self.kind == "vq":
            ce, correct = self.video_head.loss(out["video"][mask], target[mask])
            result["token_acc"] = correct.float().mean() if correct.numel() else ce.new_zeros(())
        else:
            ce = self.video_head.loss(out["video"][mask], target[mask].to(out["video"].dtype))
        per_sample = torch.zeros(b, device=device, dtype=torch.float32).index_add(0, sample_idx, ce.float()) / counts
        video_loss = ce.mean() if ce.numel() else ce.new_zeros(())
        result.update(video_loss=video_loss, video_loss_per_sample=per_sample, masked_tokens=mask.sum())
        loss = video_loss
        if token_weight is not None and ce.numel():
            w = token_weight.to(device=device, dtype=torch.float32)[mask]
            loss = (ce.float() * w).sum() / w.sum().clamp_min(1e-8)
        if self.action_heads is not None and actions is not None:
            target_a = self.normalize_actions(actions.to(out["feat"].dtype), out["emb_idx"])
            per_frame = route(self.action_heads, out["emb_idx"], (out["feat"], target_a), (t,), call="loss")
            w = valid.float()
            action_loss = (per_frame * w).sum() / w.sum().clamp_min(1)
            result["action_loss"] = action_loss
            loss = loss + self.config.action_loss_weight * action_loss
        result["loss"] = loss
        return result

    @torch.no_grad()
    def changed_tokens(self, tokens: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
        """Which trunk tokens differ from the same place in the previous frame: bool ``[B,T,S]`` (frame 0: False).

        ``vq``: any id of the token (or its group) differs; ``mar``: the RMS change of the patch's latents exceeds
        ``threshold``. These are the tokens a copy of the last frame gets wrong, where the action shows.
        """
        x = self.to_trunk_tokens(tokens)
        out = torch.zeros(x.shape[:3], dtype=torch.bool, device=x.device)
        if x.shape[1] < 2:
            return out
        if self.kind == "vq":
            diff = x[:, 1:] != x[:, :-1]
            out[:, 1:] = diff.any(-1) if diff.ndim == 4 else diff
        else:
            out[:, 1:] = (x[:, 1:].float() - x[:, :-1].float()).square().mean(-1).sqrt() > threshold
        return out

    # ------------------------------------------------------------------ inference entry points
    @torch.no_grad()
    def predict_action(self, tokens: torch.Tensor, actions: torch.Tensor | None, embodiment: Embodiment,
                       action_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Policy mode: the raw action chunk ``[B, A_max]`` to execute after the last frame of ``tokens``.

        Uses frames ``<= T-1`` and action rows ``< T-1`` only (row ``T-1`` of ``actions``, if given, is ignored
        by causality). Padding past the embodiment's chunk width is zero.
        """
        if self.action_heads is None:
            raise RuntimeError("this model has no action heads (built with predict_actions=False)")
        out = self.forward(tokens, actions, embodiment, None, action_mask)
        feat = out["feat"][:, -1:]
        normed = route(self.action_heads, out["emb_idx"], (feat,), (1, self.config.max_chunk_dim), call="predict")
        return self.unnormalize_actions(normed, out["emb_idx"])[:, 0]

    def generate(self, prompt_tokens: torch.Tensor, actions: torch.Tensor | None, embodiment: Embodiment,
                 num_frames: int, **kwargs: object) -> torch.Tensor:
        """Generate ``num_frames`` frames after the prompt; see :func:`hma_zoo.sampling.generate`."""
        from hma_zoo.sampling import generate

        return generate(self, prompt_tokens, actions, embodiment, num_frames, **kwargs)

    def generate_teacher_forced(self, tokens: torch.Tensor, actions: torch.Tensor | None, embodiment: Embodiment,
                                **kwargs: object) -> torch.Tensor:
        """Frame ``t >= 1`` predicted from ground-truth frames ``< t``; see :func:`hma_zoo.sampling.teacher_forced`."""
        from hma_zoo.sampling import teacher_forced

        return teacher_forced(self, tokens, actions, embodiment, **kwargs)

    # ------------------------------------------------------------------ fine-tuning
    def with_embodiments(self, new: Sequence[EmbodimentSpec]) -> HMA:
        """A new model serving ``config.embodiments + new``: trunk, video stem/head and existing stems/heads keep
        their weights; the new embodiments get freshly initialised stems and heads. Returns a new module."""
        names = set(self.config.embodiment_names)
        clash = [e.name for e in new if e.name in names]
        if clash:
            raise ValueError(f"embodiments {clash} already exist in this model")
        config = replace(self.config, embodiments=self.config.embodiments + tuple(new))
        model = HMA(config).to(self.pos.device)
        own = self.state_dict()
        target = model.state_dict()
        for key, value in own.items():
            if key in target and target[key].shape == value.shape:
                target[key] = value
        model.load_state_dict(target)
        return model

    def trunk_parameters(self) -> list[nn.Parameter]:
        """Parameters shared by all embodiments (for freezing the trunk when fine-tuning)."""
        return list(self.trunk.parameters())


def _build(config: dict) -> HMA:
    return HMA(HMAConfig.from_dict(config))


hub.register_kind("hma", _build, lambda m: m.config.to_dict())
