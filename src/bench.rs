//! `webvlm bench`: memory bandwidth, GEMV throughput, decode speed.
