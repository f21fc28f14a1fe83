"""Flax models: the decoder LM, the encoder for critics, value and Q heads."""

from agentrl.models.decoder import (Decoder, DecoderConfig, DecoderOutput, KVCache, count_params,
                                    init_cache, init_params, positions_from_mask)
