//! `webvlm convert`: any supported checkpoint in, manifest + safetensors shards out.
