//! ONNX export: a network or an ensemble as one standard ONNX graph (opset 17), so ONNX Runtime,
//! and every language and platform it serves, can run what `digits` trained, and so our own
//! inference can be measured against the engine people deploy CPU models with.
//!
//! The graph takes what [`Classify`] takes, MNIST-layout pixels in 0..1 (`pixels`, N x 1 x 28 x
//! 28), and gives what it gives: `logits` (N x 10, an ensemble's calibrated mean) and
//! `probabilities` (softmax of the logits over the model's temperature). The layers are the ones
//! our own evaluation runs (`Network::eval_layers`: batch norms folded, no dropout); their NHWC
//! weights are reordered to ONNX's NCHW.

use crate::ensemble::{EnsembleModel, SHIFTS};
use crate::file::{self, ModelError};
use crate::model::{Classify, Model, NeuralModel};
use digits_data::SIDE;
use digits_nn::{EvalLayer, Shape};
use prost::Message;

/// ONNX IR version 8 goes with opset 17, the oldest opset the export needs.
const IR_VERSION: i64 = 8;
const OPSET: i64 = 17;
const CLASSES: i64 = 10;
/// The graph's input and output names.
pub const INPUT: &str = "pixels";
pub const LOGITS: &str = "logits";
pub const PROBABILITIES: &str = "probabilities";

/// The model as ONNX protobuf bytes. SVMs are refused: they are not a network.
pub fn export(model: &Model) -> Result<Vec<u8>, ModelError> {
    let mut graph = Graph::default();
    let logits = match model {
        Model::Neural(m) => graph.network(m, INPUT, "")?,
        Model::Ensemble(e) => graph.ensemble(e)?,
        Model::Svm(_) => {
            return Err(ModelError::Unsupported(format!(
                "ONNX export covers networks ({}) and their ensembles; \
                 an SVM is not a network",
                crate::arch::Architecture::names()
            )))
        }
    };
    graph.node("Identity", &[&logits], LOGITS, vec![]);
    let scaled = graph.scale(LOGITS, 1.0 / model.temperature(), "calibrated");
    graph.node(
        "Softmax",
        &[&scaled],
        PROBABILITIES,
        vec![Attribute::int("axis", 1)],
    );
    Ok(graph.into_model(model).encode_to_vec())
}

/// Writes [`export`]'s bytes to `path` atomically; returns how many.
pub fn save(model: &Model, path: &std::path::Path) -> Result<usize, ModelError> {
    let bytes = export(model)?;
    file::write_atomic(path, &bytes)?;
    Ok(bytes.len())
}

/// A graph under construction: nodes, initializers and a counter for fresh names.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: usize,
}

/// What a member's current activation is, so dense layers read it in the right order.
#[derive(Clone, Copy)]
enum Layout {
    /// N x C x H x W (ONNX's layout; ours is NHWC).
    Image(Shape),
    /// Flattened from an image in C, H, W order.
    Flat(Shape),
}

impl Graph {
    fn fresh(&mut self, what: &str) -> String {
        self.names += 1;
        format!("{what}_{}", self.names)
    }

    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.to_string(),
            attribute,
        });
    }

    /// Adds `op` with a fresh output name, and returns the name.
    fn step(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.node(op, inputs, &out, attribute);
        out
    }

    fn floats(&mut self, what: &str, dims: &[usize], values: Vec<f32>) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let name = self.fresh(what);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    fn ints(&mut self, what: &str, values: &[i64]) -> String {
        let name = self.fresh(what);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    fn scale(&mut self, input: &str, factor: f32, what: &str) -> String {
        let factor = self.floats(what, &[], vec![factor]);
        self.step("Mul", &[input, &factor], vec![])
    }

    /// One network from `input` (N x 1 x 28 x 28) to its raw logits; returns their name.
    fn network(
        &mut self,
        m: &NeuralModel,
        input: &str,
        prefix: &str,
    ) -> Result<String, ModelError> {
        let refuse = |why: String| ModelError::Unsupported(format!("ONNX export: {why}"));
        let mut layout = Layout::Image(m.net.input_shape());
        let mut x = input.to_string();
        for layer in m.net.eval_layers() {
            (x, layout) = self.op(layer, &x, layout, prefix).map_err(refuse)?;
        }
        Ok(x)
    }

    fn op(
        &mut self,
        layer: EvalLayer,
        x: &str,
        layout: Layout,
        prefix: &str,
    ) -> Result<(String, Layout), String> {
        let name = |what: &str| format!("{prefix}{what}");
        Ok(match (layer, layout) {
            (
                EvalLayer::Conv {
                    weight,
                    bias,
                    kernel,
                    stride,
                    padding,
                },
                Layout::Image(s),
            ) => {
                let filters = bias.len();
                if weight.len() != kernel * kernel * s.c * filters {
                    return Err(format!(
                        "a convolution's weights ({}) do not fit its shape",
                        weight.len()
                    ));
                }
                // Ours: [(ky, kx, in) x out]; ONNX: [out, in, ky, kx].
                let mut w = vec![0f32; weight.len()];
                for (row, values) in weight.chunks_exact(filters).enumerate() {
                    let (ky, kx, c) = (row / (kernel * s.c), row / s.c % kernel, row % s.c);
                    for (o, &v) in values.iter().enumerate() {
                        w[((o * s.c + c) * kernel + ky) * kernel + kx] = v;
                    }
                }
                let w = self.floats(&name("conv_weight"), &[filters, s.c, kernel, kernel], w);
                let b = self.floats(&name("conv_bias"), &[filters], bias);
                let (k, st, p) = (kernel as i64, stride as i64, padding as i64);
                let y = self.step(
                    "Conv",
                    &[x, &w, &b],
                    vec![
                        Attribute::ints("kernel_shape", &[k, k]),
                        Attribute::ints("strides", &[st, st]),
                        Attribute::ints("pads", &[p, p, p, p]),
                    ],
                );
                let out = |d: usize| (d + 2 * padding - kernel) / stride + 1;
                (y, Layout::Image(Shape::new(out(s.h), out(s.w), filters)))
            }
            (EvalLayer::Dense { weight, bias }, layout) => {
                let (x, from) = match layout {
                    Layout::Image(s) => (self.flatten(x), s),
                    Layout::Flat(s) => (x.to_string(), s),
                };
                let units = bias.len();
                if weight.len() != from.len() * units {
                    return Err(format!(
                        "a dense layer's weights ({}) do not fit its {} inputs",
                        weight.len(),
                        from.len()
                    ));
                }
                // Ours: [(h, w, c) x units]; ONNX's Gemm with transB: [units, (c, h, w)].
                let mut w = vec![0f32; weight.len()];
                for (row, values) in weight.chunks_exact(units).enumerate() {
                    let (h, wi, c) = (row / (from.w * from.c), row / from.c % from.w, row % from.c);
                    let col = (c * from.h + h) * from.w + wi;
                    for (u, &v) in values.iter().enumerate() {
                        w[u * from.len() + col] = v;
                    }
                }
                let w = self.floats(&name("dense_weight"), &[units, from.len()], w);
                let b = self.floats(&name("dense_bias"), &[units], bias);
                let y = self.step("Gemm", &[&x, &w, &b], vec![Attribute::int("transB", 1)]);
                (y, Layout::Flat(Shape::flat(units)))
            }
            (EvalLayer::Affine { scale, shift }, layout) => {
                // Per channel: C x 1 x 1 against an image, C against a flat vector.
                let dims = |c| match layout {
                    Layout::Image(_) => vec![c, 1, 1],
                    Layout::Flat(_) => vec![c],
                };
                let d = dims(scale.len());
                let s = self.floats(&name("norm_scale"), &d, scale);
                let t = self.floats(&name("norm_shift"), &d, shift);
                let y = self.step("Mul", &[x, &s], vec![]);
                (self.step("Add", &[&y, &t], vec![]), layout)
            }
            (EvalLayer::Relu, layout) => (self.step("Relu", &[x], vec![]), layout),
            (EvalLayer::MaxPool { size }, Layout::Image(s)) => {
                let k = size as i64;
                let y = self.step(
                    "MaxPool",
                    &[x],
                    vec![
                        Attribute::ints("kernel_shape", &[k, k]),
                        Attribute::ints("strides", &[k, k]),
                    ],
                );
                (y, Layout::Image(Shape::new(s.h / size, s.w / size, s.c)))
            }
            (EvalLayer::Flatten, Layout::Image(s)) => (self.flatten(x), Layout::Flat(s)),
            (EvalLayer::Flatten, flat) => (x.to_string(), flat),
            (EvalLayer::Conv { .. } | EvalLayer::MaxPool { .. }, Layout::Flat(_)) => {
                return Err(String::from(
                    "a convolution or pool after a dense layer has no ONNX equivalent here",
                ))
            }
        })
    }

    fn flatten(&mut self, x: &str) -> String {
        self.step("Flatten", &[x], vec![Attribute::int("axis", 1)])
    }

    /// The mean of the members' logits, each over its temperature, over the input and (when
    /// the ensemble uses them) its shifted views, as [`EnsembleModel`] computes it.
    fn ensemble(&mut self, e: &EnsembleModel) -> Result<String, ModelError> {
        let views = if e.meta.shifted_views {
            let mut views = vec![INPUT.to_string()];
            for (dx, dy) in SHIFTS {
                views.push(self.shifted(dx as i64, dy as i64));
            }
            let all: Vec<&str> = views.iter().map(String::as_str).collect();
            self.step("Concat", &all, vec![Attribute::int("axis", 0)])
        } else {
            INPUT.to_string()
        };
        let count = if e.meta.shifted_views {
            1 + SHIFTS.len()
        } else {
            1
        };
        let weight = 1.0 / (count * e.members.len()) as f32;
        let mut scaled = Vec::new();
        for (i, m) in e.members.iter().enumerate() {
            let logits = self.network(m, &views, &format!("member{}_", i + 1))?;
            scaled.push(self.scale(&logits, weight / m.temperature(), "member_weight"));
        }
        let refs: Vec<&str> = scaled.iter().map(String::as_str).collect();
        let sum = self.step("Sum", &refs, vec![]);
        if count == 1 {
            return Ok(sum);
        }
        // The views were stacked along the batch: [count * N, 10] -> [count, N, 10], summed.
        let shape = self.ints("views_shape", &[count as i64, -1, CLASSES]);
        let stacked = self.step("Reshape", &[&sum, &shape], vec![]);
        let axes = self.ints("views_axis", &[0]);
        Ok(self.step(
            "ReduceSum",
            &[&stacked, &axes],
            vec![Attribute::int("keepdims", 0)],
        ))
    }

    /// The input moved `dx` right and `dy` down, blank where it moved from outside.
    fn shifted(&mut self, dx: i64, dy: i64) -> String {
        let pads = self.ints(
            "shift_pads",
            &[0, 0, dy.max(0), dx.max(0), 0, 0, (-dy).max(0), (-dx).max(0)],
        );
        let padded = self.step("Pad", &[INPUT, &pads], vec![]);
        let side = SIDE as i64;
        let (y0, x0) = ((-dy).max(0), (-dx).max(0));
        let starts = self.ints("shift_starts", &[y0, x0]);
        let ends = self.ints("shift_ends", &[y0 + side, x0 + side]);
        let axes = self.ints("shift_axes", &[2, 3]);
        self.step("Slice", &[&padded, &starts, &ends, &axes], vec![])
    }

    fn into_model(self, model: &Model) -> ModelProto {
        let batch = || Dimension {
            dim_param: String::from("N"),
            dim_value: 0,
        };
        let fixed = |d: i64| Dimension {
            dim_param: String::new(),
            dim_value: d,
        };
        let value = |name: &str, dims: Vec<Dimension>, doc: &str| ValueInfoProto {
            name: name.to_string(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorType {
                    elem_type: FLOAT,
                    shape: Some(TensorShapeProto { dim: dims }),
                }),
            }),
            doc_string: doc.to_string(),
        };
        let side = SIDE as i64;
        let lineage = model.lineage();
        let mut metadata = vec![
            (String::from("digits.kind"), model.kind().to_string()),
            (String::from("digits.version"), lineage.version.to_string()),
            (
                String::from("digits.temperature"),
                model.temperature().to_string(),
            ),
        ];
        if let Some(a) = model.test_accuracy() {
            metadata.push((String::from("digits.test_accuracy"), a.to_string()));
        }
        ModelProto {
            ir_version: IR_VERSION,
            producer_name: String::from("digits"),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            doc_string: format!(
                "digits {} model: handwritten digit classifier. Input: MNIST-layout images \
                 (white digit on black, centred in 28x28), pixel bytes / 255.",
                model.kind()
            ),
            graph: Some(GraphProto {
                node: self.nodes,
                name: format!("digits_{}", model.kind().replace('-', "_")),
                initializer: self.initializers,
                input: vec![value(
                    INPUT,
                    vec![batch(), fixed(1), fixed(side), fixed(side)],
                    "N x 1 x 28 x 28, pixel bytes / 255",
                )],
                output: vec![
                    value(
                        LOGITS,
                        vec![batch(), fixed(CLASSES)],
                        "scores of the digits 0-9",
                    ),
                    value(
                        PROBABILITIES,
                        vec![batch(), fixed(CLASSES)],
                        "calibrated probabilities of the digits 0-9",
                    ),
                ],
            }),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key, value })
                .collect(),
        }
    }
}

// The parts of onnx.proto (github.com/onnx/onnx, onnx/onnx.proto) the export writes, with its
// field numbers.

const FLOAT: i32 = 1;
const INT64: i32 = 7;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(string, tag = "6")]
    doc_string: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int64, tag = "3")]
    i: i64,
    #[prost(int64, repeated, tag = "8")]
    ints: Vec<i64>,
    #[prost(int32, tag = "20")]
    r#type: i32,
}

/// Builds attributes (AttributeProto.AttributeType: INT = 2, INTS = 7).
struct Attribute;

impl Attribute {
    fn int(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: name.to_string(),
            i,
            ints: Vec::new(),
            r#type: 2,
        }
    }

    fn ints(name: &str, ints: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.to_string(),
            i: 0,
            ints: ints.to_vec(),
            r#type: 7,
        }
    }
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
    #[prost(string, tag = "3")]
    doc_string: String,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorType>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorType {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

/// `dim_value` and `dim_param` are a oneof in onnx.proto; prost writes a plain field only when
/// it is not the default, so setting exactly one of them writes exactly one.
#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, tag = "1")]
    dim_value: i64,
    #[prost(string, tag = "2")]
    dim_param: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{shipped, Architecture};

    fn graph(model: &Model) -> GraphProto {
        let bytes = export(model).expect("exports");
        let decoded = ModelProto::decode(bytes.as_slice()).expect("valid protobuf");
        assert_eq!(
            (decoded.ir_version, decoded.opset_import[0].version),
            (8, 17)
        );
        decoded.graph.expect("a graph")
    }

    fn ops(g: &GraphProto) -> Vec<&str> {
        g.node.iter().map(|n| n.op_type.as_str()).collect()
    }

    #[test]
    fn the_cnn_is_its_layers_with_batch_norms_folded_and_dropout_gone() {
        let model = shipped::by_name("cnn").unwrap().unwrap();
        let g = graph(&model);
        let block = ["Conv", "Relu"];
        let want = [
            &block[..],
            &block,
            &["MaxPool"],
            &block,
            &block,
            &[
                "MaxPool", "Flatten", "Gemm", "Relu", "Gemm", "Identity", "Mul", "Softmax",
            ],
        ]
        .concat();
        assert_eq!(ops(&g), want);
        // Every node's inputs are the graph's input, an initializer or an earlier output.
        let mut known: Vec<&str> = vec![INPUT];
        known.extend(g.initializer.iter().map(|t| t.name.as_str()));
        for n in &g.node {
            for i in &n.input {
                assert!(known.contains(&i.as_str()), "{} reads unknown {i}", n.name);
            }
            known.extend(n.output.iter().map(String::as_str));
        }
        let outputs: Vec<_> = g.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outputs, [LOGITS, PROBABILITIES]);
        // The first convolution: 32 filters over 1 channel, 3x3, with the folded bias.
        let dims: Vec<_> = g
            .initializer
            .iter()
            .take(2)
            .map(|t| t.dims.clone())
            .collect();
        assert_eq!(dims, [vec![32, 1, 3, 3], vec![32]]);
    }

    #[test]
    fn an_ensemble_reads_every_view_with_every_member() {
        let a = Architecture::Mlp;
        let members = (1..=3)
            .map(|seed| NeuralModel::new(a, a.default_training(), seed))
            .collect();
        let g = graph(&Model::Ensemble(EnsembleModel::new(members, true)));
        let count = |op| ops(&g).iter().filter(|o| **o == op).count();
        assert_eq!((count("Pad"), count("Slice"), count("Concat")), (4, 4, 1));
        // Three members of three dense layers, one sum over members, one over views.
        assert_eq!((count("Gemm"), count("Sum"), count("ReduceSum")), (9, 1, 1));
    }

    #[test]
    fn an_svm_is_refused_with_the_reason() {
        let svm = shipped::by_name("svm").unwrap().unwrap();
        let e = export(&svm).unwrap_err().to_string();
        assert!(e.contains("an SVM is not a network"), "{e}");
    }
}
