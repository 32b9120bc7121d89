//! ONNX: the protobuf messages ([`proto`]), a model file and its external data ([`file`]), reading
//! an exported model's tensors ([`read`]) and building a graph ([`graph`]).

pub mod file;
pub mod graph;
pub mod proto;
pub mod read;
