//! A small builder for ONNX graphs: named values, nodes, initializers.

use std::path::Path;

use crate::model::formats::onnx::file::{Init, Spill, Written};
use crate::model::formats::onnx::proto::*;

/// A tensor dimension in a graph input or output.
#[derive(Clone, Debug)]
pub enum Dim {
    Fixed(i64),
    Sym(&'static str),
}

/// An attribute of a node.
pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: v, r#type: attr_type::INT, ..Default::default() }
}
pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f: v, r#type: attr_type::FLOAT, ..Default::default() }
}
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: v.to_vec(), r#type: attr_type::INTS, ..Default::default() }
}
pub fn attr_t(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { name: name.into(), t: Some(t), r#type: attr_type::TENSOR, ..Default::default() }
}

fn tensor(name: &str, dims: &[i64], data_type: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto { dims: dims.to_vec(), data_type, name: name.into(), raw_data: raw, ..Default::default() }
}

pub use crate::model::formats::onnx::file::f32_bytes;

/// Initializers this large or larger go to the spill file of a [`Graph::spilling`] graph.
const SPILL_MIN: usize = 4096;

/// An ONNX graph being built. [`Graph::default`] keeps everything in memory; [`Graph::spilling`]
/// writes large initializers to a file as they are added, so that a model's weights are never
/// held twice (once as weights, once serialized) and models past protobuf's 2 GiB limit can be
/// written with their data beside them.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<Init>,
    spill: Option<Spill>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    /// Node values that become graph outputs, with their output names.
    renames: Vec<(String, String)>,
    next: usize,
}

fn value_info(name: &str, elem: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(v) => DimValue::Value(*v),
                Dim::Sym(s) => DimValue::Param(s.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor { elem_type: elem, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}

impl Graph {
    /// A graph whose initializers of 4 KiB or more go to a spill file in `dir` (removed, or kept
    /// as the model's external data, by [`Graph::write`]).
    pub fn spilling(dir: &Path) -> anyhow::Result<Graph> {
        Ok(Graph { spill: Some(Spill::create(dir)?), ..Default::default() })
    }

    fn push_init(&mut self, name: &str, dims: &[i64], data_type: i32, raw: Vec<u8>) {
        if self.spill.is_some() && raw.len() >= SPILL_MIN {
            self.push_values(name, dims, data_type, raw.len(), |s| s.put(&raw), Vec::new);
        } else {
            self.inits.push(Init { tensor: tensor(name, dims, data_type, raw), spilled: None });
        }
    }

    /// An initializer of `len` bytes: written to the spill file by `spill` when the graph spills
    /// and it is large, else held inline as `inline` makes it.
    fn push_values(
        &mut self,
        name: &str,
        dims: &[i64],
        data_type: i32,
        len: usize,
        spill: impl FnOnce(&mut Spill) -> crate::model::formats::onnx::file::Span,
        inline: impl FnOnce() -> Vec<u8>,
    ) {
        let init = match &mut self.spill {
            Some(s) if len >= SPILL_MIN => {
                Init { tensor: tensor(name, dims, data_type, vec![]), spilled: Some(spill(s)) }
            }
            _ => Init { tensor: tensor(name, dims, data_type, inline()), spilled: None },
        };
        self.inits.push(init);
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    pub fn input(&mut self, name: &str, elem: i32, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, elem, dims));
        name.into()
    }

    pub fn output(&mut self, value: &str, name: &str, elem: i32, dims: &[Dim]) {
        // A value made by a node is renamed where it is made (when the graph is written) rather
        // than copied by an Identity: ONNX Runtime keeps an Identity whose input other nodes also
        // read and copies the tensor (here, a layer's whole KV cache at every step).
        let made = self.nodes.iter().any(|n| n.output.iter().any(|o| o == value));
        if value != name && made && !self.renames.iter().any(|(v, _)| v == value) {
            self.renames.push((value.into(), name.into()));
        } else if value != name {
            self.nodes.push(NodeProto {
                input: vec![value.into()],
                output: vec![name.into()],
                name: format!("out_{name}"),
                op_type: "Identity".into(),
                ..Default::default()
            });
        }
        self.outputs.push(value_info(name, elem, dims));
    }

    /// A node of the default domain with one output.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.op_n(op, "", inputs, 1, attrs).remove(0)
    }

    /// A node of any domain with `n` outputs.
    pub fn op_n(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        n: usize,
        attrs: Vec<AttributeProto>,
    ) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh(&op.to_lowercase())).collect();
        let name = self.fresh(op);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.clone(),
            name,
            op_type: op.into(),
            attribute: attrs,
            domain: domain.into(),
        });
        outs
    }

    pub fn init_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        self.push_values(name, dims, dtype::FLOAT, 4 * data.len(), |s| s.put_f32(data), || f32_bytes(data));
        name.into()
    }

    /// An f16 initializer (`--weights fp16`).
    pub fn init_f16(&mut self, name: &str, dims: &[i64], data: &[half::f16]) -> String {
        let inline = || crate::model::formats::onnx::file::f16_bytes(data);
        self.push_values(name, dims, dtype::FLOAT16, 2 * data.len(), |s| s.put_f16(data), inline);
        name.into()
    }

    pub fn init_u8(&mut self, name: &str, dims: &[i64], data: Vec<u8>) -> String {
        self.push_init(name, dims, dtype::UINT8, data);
        name.into()
    }

    /// An int8 initializer (`--weights int8`).
    pub fn init_i8(&mut self, name: &str, dims: &[i64], data: &[i8]) -> String {
        self.push_init(name, dims, dtype::INT8, data.iter().map(|&q| q as u8).collect());
        name.into()
    }

    /// A 1-D (or 0-D when `scalar`) int64 constant.
    pub fn const_i64(&mut self, v: &[i64], scalar: bool) -> String {
        let name = self.fresh("const_i64");
        let dims: &[i64] = if scalar { &[] } else { &[v.len() as i64] };
        self.push_init(&name, dims, dtype::INT64, v.iter().flat_map(|x| x.to_le_bytes()).collect());
        name
    }

    /// A 0-D float constant.
    pub fn const_f32(&mut self, v: f32) -> String {
        let name = self.fresh("const_f32");
        self.push_init(&name, &[], dtype::FLOAT, v.to_le_bytes().to_vec());
        name
    }

    /// The model with its graph's initializers left out (they are written one by one), the
    /// initializers, and the spill file holding the large ones' bytes.
    fn finish(mut self, doc: &str, metadata: &[(&str, String)]) -> (ModelProto, Vec<Init>, Option<Spill>) {
        let renames: std::collections::HashMap<String, String> = self.renames.drain(..).collect();
        for n in &mut self.nodes {
            for v in n.input.iter_mut().chain(n.output.iter_mut()) {
                if let Some(to) = renames.get(v.as_str()) {
                    *v = to.clone();
                }
            }
        }
        // Every domain the nodes use, besides ONNX's own.
        let mut domains: Vec<String> = self.nodes.iter().map(|n| n.domain.clone()).filter(|d| !d.is_empty()).collect();
        domains.sort_unstable();
        domains.dedup();
        let model = ModelProto {
            ir_version: 8,
            producer_name: "wrapflow".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: "decoder".into(),
                initializer: vec![],
                input: self.inputs,
                output: self.outputs,
            }),
            opset_import: std::iter::once(OperatorSetIdProto { domain: String::new(), version: 17 })
                .chain(domains.into_iter().map(|domain| OperatorSetIdProto { domain, version: 1 }))
                .collect(),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto { key: k.to_string(), value: v.clone() })
                .collect(),
        };
        (model, self.inits, self.spill)
    }

    /// The serialized model, for graphs built in memory.
    pub fn into_model_bytes(self, doc: &str, metadata: &[(&str, String)]) -> Vec<u8> {
        assert!(self.spill.is_none(), "a spilling graph is written with Graph::write");
        let (model, inits, _) = self.finish(doc, metadata);
        crate::model::formats::onnx::file::encode_in_memory(model, inits)
    }

    /// Writes `model.onnx` into `dir` (and `model.onnx.data` when `external` or when the model
    /// would pass protobuf's 2 GiB limit), returning its hash and size.
    pub fn write(self, dir: &Path, doc: &str, metadata: &[(&str, String)], external: bool) -> anyhow::Result<Written> {
        let (model, inits, spill) = self.finish(doc, metadata);
        crate::model::formats::onnx::file::write(dir, model, inits, spill, external)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::model::formats::onnx::file::DATA_FILE;
    use crate::model::formats::onnx::proto::ModelProto;

    fn graph(g: &mut Graph) {
        let big: Vec<f32> = (0..3000).map(|i| i as f32 * 0.5).collect();
        let w = g.init_f32("w", &[1000, 3], &big);
        let x = g.input("x", dtype::FLOAT, &[Dim::Fixed(3)]);
        let small = g.init_f32("b", &[3], &[1.0, 2.0, 3.0]);
        let y = g.op("Add", &[&x, &small], vec![]);
        let z = g.op("Gather", &[&w, &y], vec![]);
        g.init_u8("empty", &[0], vec![]);
        g.init_u8("q", &[5000], vec![7; 5000]);
        g.output(&z, "z", dtype::FLOAT, &[]);
    }

    #[test]
    fn a_spilled_model_is_the_bytes_prost_writes_or_external_data_that_holds_them() {
        let mut g = Graph::default();
        graph(&mut g);
        let want = g.into_model_bytes("doc", &[("k", "v".into())]);
        let dir = tempfile::TempDir::new().unwrap();
        let mut g = Graph::spilling(dir.path()).unwrap();
        graph(&mut g);
        let w = g.write(dir.path(), "doc", &[("k", "v".into())], false).unwrap();
        assert!(!w.external);
        let got = std::fs::read(dir.path().join("model.onnx")).unwrap();
        assert_eq!(got, want, "spilling changes nothing in the file");
        assert_eq!(w.hash, format!("blake3:{}", blake3::hash(&want).to_hex()));
        assert_eq!(w.bytes, want.len() as u64);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["model.onnx"], "the spill file is gone");

        let mut g = Graph::spilling(dir.path()).unwrap();
        graph(&mut g);
        let w = g.write(dir.path(), "doc", &[("k", "v".into())], true).unwrap();
        assert!(w.external);
        let model = ModelProto::decode(&std::fs::read(dir.path().join("model.onnx")).unwrap()[..]).unwrap();
        let data = std::fs::read(dir.path().join(DATA_FILE)).unwrap();
        let full = ModelProto::decode(&want[..]).unwrap();
        let (inits, wanted) = (&model.graph.unwrap().initializer, &full.graph.unwrap().initializer);
        assert_eq!(inits.len(), wanted.len());
        for (t, want) in inits.iter().zip(wanted) {
            let bytes = match &t.external_data[..] {
                [] => t.raw_data.clone(),
                [loc, off, len] => {
                    assert_eq!((&loc.key[..], &loc.value[..], t.data_location), ("location", DATA_FILE, 1));
                    let (off, len): (usize, usize) = (off.value.parse().unwrap(), len.value.parse().unwrap());
                    assert_eq!(off % 4096, 0, "{} is page-aligned", t.name);
                    data[off..off + len].to_vec()
                }
                other => panic!("unexpected external data {other:?}"),
            };
            assert_eq!((&t.name, &t.dims, bytes), (&want.name, &want.dims, want.raw_data.clone()));
        }
        assert_eq!(w.hash, crate::model::formats::onnx::file::model_hash(&dir.path().join("model.onnx")).unwrap());
    }
}
