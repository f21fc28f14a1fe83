"""Flax models: the decoder LM, the encoder for critics, value and Q heads."""

from agentrl.models.decoder import (Decoder, DecoderConfig, DecoderOutput, KVCache, count_params,
                                    init_cache, init_params, positions_from_mask)
from agentrl.models.encoder import (Encoder, EncoderConfig, EncoderOutput, init_encoder_params,
                                    mean_pool)
from agentrl.models.heads import (CriticEnsemble, MLPHead, UtteranceQHead, UtteranceVHead,
                                  ValueHead)
