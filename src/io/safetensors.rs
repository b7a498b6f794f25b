//! safetensors reading and writing (header parsing with limits, F32/F16/BF16/I8/U8/U32 dtypes).
