"""Named model shapes: the Qwen2 policies and ArCHer's RoBERTa-base-sized critic.

Shapes only (no weights): a preset gives the `DecoderConfig` that `hf.load_pretrained` would
build from the checkpoint's `config.json`, so sizes, shardings and memory can be planned
before any weight is downloaded (`experiments/plan.py`).

  config = presets.decoder("qwen2_7b", dtype="bfloat16")
  critic = presets.CRITICS["roberta_base"]        # encoder sizes for `config.algorithm.critic`

Qwen2 (Qwen Team 2024, the checkpoints' `config.json`): RMSNorm (eps 1e-6), RoPE with
theta 1e6, SwiGLU, grouped-query attention with a Q/K/V bias and no output bias. The 0.5B and
1.5B models tie the output layer to the token embedding; 7B does not, and its vocabulary is
padded to 152064 rows (the tokenizer has 151646 tokens; the smaller models pad to 151936).
"""

from __future__ import annotations

import dataclasses

from agentrl.models.decoder import DecoderConfig


def qwen2(**kwargs) -> DecoderConfig:
  """The Qwen2 family on top of `DecoderConfig.llama`: Q/K/V bias, RoPE theta 1e6."""
  defaults = dict(qkv_bias=True, out_bias=False, mlp_bias=False, rope_theta=1e6, norm_eps=1e-6,
                  max_position_embeddings=32768)
  return DecoderConfig.llama(**{**defaults, **kwargs})


#: name -> policy decoder shape (float32; `decoder(name, dtype=...)` sets the dtypes).
DECODERS: dict[str, DecoderConfig] = {
    # Qwen/Qwen2-0.5B: 494M parameters.
    "qwen2_0_5b": qwen2(vocab_size=151936, hidden_size=896, num_layers=24, num_heads=14,
                        num_kv_heads=2, mlp_dim=4864, tie_embeddings=True,
                        max_position_embeddings=131072),
    # Qwen/Qwen2-1.5B: 1.54B parameters.
    "qwen2_1_5b": qwen2(vocab_size=151936, hidden_size=1536, num_layers=28, num_heads=12,
                        num_kv_heads=2, mlp_dim=8960, tie_embeddings=True,
                        max_position_embeddings=131072),
    # Qwen/Qwen2-7B: 7.62B parameters.
    "qwen2_7b": qwen2(vocab_size=152064, hidden_size=3584, num_layers=28, num_heads=28,
                      num_kv_heads=4, mlp_dim=18944, tie_embeddings=False,
                      max_position_embeddings=131072),
    # For tests: the Qwen2 layout at toy sizes (every dimension splits 2 and 4 ways).
    "tiny": qwen2(vocab_size=512, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  mlp_dim=128, tie_embeddings=True, max_position_embeddings=512),
}


@dataclasses.dataclass(frozen=True)
class CriticShape:
  """Sizes of ArCHer's utterance critic: its encoder and the twin Q/V MLP heads
  (the keys of `config.algorithm.critic`)."""

  hidden_size: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  head_dims: tuple[int, ...]

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


#: name -> critic shape. ArCHer's official critic is RoBERTa-base with two 768-wide hidden
#: layers in each Q/V head; here the encoder reads the policy's ids, so its embedding table
#: has the policy's vocabulary, not RoBERTa's 50265 rows.
CRITICS: dict[str, CriticShape] = {
    "roberta_base": CriticShape(hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072,
                                head_dims=(768, 768)),
    "tiny": CriticShape(hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64, head_dims=(32,)),
}

#: The critic each policy preset is planned with.
DEFAULT_CRITIC = {"tiny": "tiny"}


def names() -> list[str]:
  return sorted(DECODERS)


def decoder(name: str, *, dtype: str = "float32", param_dtype: str | None = None
            ) -> DecoderConfig:
  """The decoder preset `name` computing in `dtype`, its parameters stored in `param_dtype`
  (default: `dtype`)."""
  if name not in DECODERS:
    raise ValueError(f"Unknown model preset {name!r}; valid names: {', '.join(names())}.")
  return DECODERS[name].replace(dtype=dtype, param_dtype=param_dtype or dtype)


def critic(name: str) -> CriticShape:
  if name not in CRITICS:
    raise ValueError(f"Unknown critic preset {name!r}; valid names: {', '.join(sorted(CRITICS))}.")
  return CRITICS[name]
