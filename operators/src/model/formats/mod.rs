//! The file formats models come in and go out as: GGUF ([`gguf`], with its block types), ONNX
//! ([`onnx`]: the protobuf, writing a model with its external data, reading one, the graph
//! builder) and safetensors ([`safetensors`]). Nothing here knows a model's architecture.

pub mod gguf;
pub mod onnx;
pub mod safetensors;
