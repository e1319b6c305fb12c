//! `layerlens.v1.Text`: a model's tokenizer, generated continuations streamed token by
//! token, and perturbation attribution over a prompt's tokens or template values
//! (engine text.rs). Tokenizing and decoding happen here; the worker sees token ids.

use super::{in_model, EventStream, SharedState, EVENT_BUFFER};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::store::ModelRecord;
use crate::tokenizer::{self, Template, TemplateFeatures, TokenFeatures};
use layerlens_engine::text::{GenerationOptions, TextAttributionRequest, TextFeatures, TextMethod, TextTarget};
use layerlens_proto as proto;
use proto::text_server::Text;
use std::sync::Arc;
use tokenizers::Tokenizer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct TextService {
    pub state: SharedState,
}

/// Most new tokens one request may ask for.
const MAX_NEW_TOKENS: u32 = 4096;
/// Shapley permutations one request may ask for.
const MAX_SAMPLES: u32 = 10_000;

impl TextService {
    /// The model's record and its tokenizer.
    async fn tokenizer_of(&self, reference: &str) -> ApiResult<(ModelRecord, Arc<Tokenizer>)> {
        let record = self.state.resolve(reference).await?;
        let model_id = record.id.clone();
        let tokenizer = self
            .state
            .with_store(move |store| {
                let path = store.tokenizer_path(&model_id);
                let bytes = std::fs::read(&path).map_err(|_| {
                    ApiError::bad_input(format!(
                        "model {} has no tokenizer; store its tokenizer.json with `layerlens models add FILE --tokenizer tokenizer.json` \
                         or Text.SetTokenizer",
                        &model_id[..12]
                    ))
                })?;
                tokenizer::parse(&bytes)
            })
            .await?;
        Ok((record, Arc::new(tokenizer)))
    }
}

/// The model's token embedding (the first Embedding module): its path and rows.
fn token_embedding(path: &std::path::Path) -> ApiResult<Option<(String, u64)>> {
    let tree = layerlens_engine::model::module_tree(path)?;
    Ok(tree.iter().filter(|module| module.qualified_type.contains("Embedding")).find_map(|module| {
        let rows = module.params.iter().find(|param| param.name == "weight").and_then(|param| param.shape.first().copied())?;
        Some((module.path.clone(), rows as u64))
    }))
}

fn method(name: &str) -> ApiResult<TextMethod> {
    match name {
        "" | "feature_ablation" => Ok(TextMethod::FeatureAblation),
        "shapley_value_sampling" => Ok(TextMethod::ShapleyValueSampling),
        "lime" => Ok(TextMethod::Lime),
        "kernel_shap" => Ok(TextMethod::KernelShap),
        "layer_integrated_gradients" => Ok(TextMethod::LayerIntegratedGradients),
        "layer_gradient_x_activation" => Ok(TextMethod::LayerGradientXActivation),
        other => Err(ApiError::bad_input(format!(
            "text attribution method {other:?} is not known; use feature_ablation, shapley_value_sampling, lime, kernel_shap, \
             layer_integrated_gradients or layer_gradient_x_activation"
        ))),
    }
}

#[tonic::async_trait]
impl Text for TextService {
    type GenerateStream = EventStream<proto::GenerateTextEvent>;

    async fn set_tokenizer(&self, request: Request<proto::SetTokenizerRequest>) -> Result<Response<proto::TokenizerInfo>, Status> {
        let request = request.into_inner();
        let record = self.state.resolve(&request.model).await?;
        let info = self
            .state
            .with_store(move |store| {
                let tokenizer = tokenizer::parse(&request.tokenizer_json)?;
                let vocab = tokenizer.get_vocab_size(true) as u64;
                let rows = token_embedding(&store.model_path(&record.id))?.map(|(_, rows)| rows);
                if let Some(rows) = rows {
                    if vocab > rows {
                        return Err(ApiError::bad_input(format!(
                            "the tokenizer's vocabulary has {vocab} tokens but the model's embedding has {rows} rows: ids from {rows} on would \
                             index past it; this is not the model's tokenizer"
                        )));
                    }
                }
                store.set_tokenizer(&record.id, &request.tokenizer_json)?;
                use sha2::Digest;
                Ok(proto::TokenizerInfo {
                    model: record.id.clone(),
                    vocab_size: vocab as u32,
                    model_vocab: rows.unwrap_or(0) as u32,
                    id: hex::encode(sha2::Sha256::digest(&request.tokenizer_json)),
                })
            })
            .await?;
        self.state.cache.forget_model(&info.model);
        Ok(Response::new(info))
    }

    async fn tokenize(&self, request: Request<proto::TokenizeRequest>) -> Result<Response<proto::TokenizeResponse>, Status> {
        let request = request.into_inner();
        let (_, tokenizer) = self.tokenizer_of(&request.model).await?;
        let (ids, tokens) = tokenizer::encode(&tokenizer, &request.text, request.add_special_tokens.unwrap_or(true))?;
        Ok(Response::new(proto::TokenizeResponse { ids, tokens }))
    }

    async fn generate(&self, request: Request<proto::GenerateTextRequest>) -> Result<Response<Self::GenerateStream>, Status> {
        let request = request.into_inner();
        let (_, tokenizer) = self.tokenizer_of(&request.model).await?;
        let (prompt, _) = tokenizer::encode(&tokenizer, &request.text, true)?;
        if request.max_new_tokens > MAX_NEW_TOKENS {
            return Err(ApiError::bad_input(format!("max_new_tokens is {}; at most {MAX_NEW_TOKENS}", request.max_new_tokens)).into());
        }
        let eos = request
            .eos_token_id
            .or_else(|| ["<|endoftext|>", "</s>", "[SEP]", "<eos>"].iter().find_map(|token| tokenizer.token_to_id(token)).map(i64::from));
        let options = GenerationOptions {
            max_new_tokens: if request.max_new_tokens == 0 { 20 } else { request.max_new_tokens as usize },
            sample: request.sample,
            seed: request.seed,
            temperature: if request.temperature == 0.0 { 1.0 } else { request.temperature },
            top_k: request.top_k as usize,
            eos_token_id: eos,
        };
        let (record, worker) = self.state.worker_for(&request.model).await?;
        let (sender, receiver) = mpsc::channel(EVENT_BUFFER);
        // Tokens leave the worker through an unbounded channel (at most max_new_tokens
        // of them, so the worker never waits) and are decoded and sent here.
        let (tokens_sender, mut tokens) = mpsc::unbounded_channel::<layerlens_engine::text::GeneratedToken>();
        let report: layerlens_engine::worker::Reporter<layerlens_engine::text::GeneratedToken> = Box::new(move |token| match token {
            Some(token) => tokens_sender.send(token).is_ok(),
            None => !tokens_sender.is_closed(),
        });
        let stream = sender.clone();
        let relay_tokenizer = tokenizer.clone();
        let relay = tokio::spawn(async move {
            let mut ids = Vec::new();
            while let Some(token) = tokens.recv().await {
                ids.push(token.id);
                let text = tokenizer::decode(&relay_tokenizer, &ids).unwrap_or_default();
                let event =
                    proto::GeneratedToken { id: token.id, token: tokenizer::token(&relay_tokenizer, token.id), text, log_prob: token.log_prob };
                let event = proto::GenerateTextEvent { event: Some(proto::generate_text_event::Event::Token(event)) };
                if stream.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        });
        super::finish_stream(sender, async move {
            let generated = worker.generate_text(prompt.clone(), options, report).await;
            let _ = relay.await;
            let generated = generated.map_err(in_model(&record))?;
            let ids: Vec<i64> = generated.iter().map(|token| token.id).collect();
            let result = proto::GeneratedText {
                text: tokenizer::decode(&tokenizer, &ids)?,
                tokens: ids.iter().map(|&id| tokenizer::token(&tokenizer, id)).collect(),
                ids,
                prompt_ids: prompt,
            };
            Ok(proto::GenerateTextEvent { event: Some(proto::generate_text_event::Event::Result(result)) })
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn attribute(&self, request: Request<proto::AttributeTextRequest>) -> Result<Response<proto::AttributeTextResponse>, Status> {
        let request = request.into_inner();
        let method = method(&request.method)?;
        let probability = match request.attr_target.as_str() {
            "" | "log_prob" => false,
            "prob" => true,
            other => return Err(ApiError::bad_input(format!("attr_target {other:?}: expected log_prob or prob")).into()),
        };
        if request.n_samples > MAX_SAMPLES {
            return Err(ApiError::bad_input(format!("n_samples is {}; at most {MAX_SAMPLES}", request.n_samples)).into());
        }
        let (_, tokenizer) = self.tokenizer_of(&request.model).await?;
        let baseline = if request.baseline_token.is_empty() { 0 } else { tokenizer::token_id(&tokenizer, &request.baseline_token)? };
        let skip: Vec<i64> = request.skip_tokens.iter().map(|token| tokenizer::token_id(&tokenizer, token)).collect::<ApiResult<_>>()?;
        let (features, input_tokens): (Box<dyn TextFeatures>, Vec<String>) = match &request.prompt {
            Some(proto::attribute_text_request::Prompt::Text(text)) => {
                let (ids, _) = tokenizer::encode(&tokenizer, text, true)?;
                let features = TokenFeatures::new(ids, &skip, baseline);
                let tokens = features.positions.iter().map(|&position| tokenizer::token(&tokenizer, features.ids[position])).collect();
                (Box::new(features), tokens)
            }
            Some(proto::attribute_text_request::Prompt::Template(template)) => {
                if !template.names.is_empty() && template.names.len() != template.values.len() {
                    return Err(ApiError::bad_input(format!(
                        "the template has {} values but {} names; give one name per value",
                        template.values.len(),
                        template.names.len()
                    ))
                    .into());
                }
                let parsed = Template::parse(&template.template, &template.names)?;
                if parsed.slots() > template.values.len() {
                    return Err(ApiError::bad_input(format!(
                        "the template has {} slots but {} values were given",
                        parsed.slots(),
                        template.values.len()
                    ))
                    .into());
                }
                let baselines = if template.baselines.is_empty() { vec![String::new(); template.values.len()] } else { template.baselines.clone() };
                if baselines.len() != template.values.len() {
                    return Err(ApiError::bad_input(format!("{} baselines for {} values", baselines.len(), template.values.len())).into());
                }
                let features = TemplateFeatures { template: parsed, values: template.values.clone(), baselines, tokenizer: tokenizer.clone() };
                (Box::new(features), template.values.clone())
            }
            None => return Err(ApiError::bad_input("give the prompt as text or as a template").into()),
        };
        let (record, worker) = self.state.worker_for(&request.model).await?;
        let target = match request.target_class {
            Some(class) => TextTarget::Class(class),
            None if !request.target_text.is_empty() => {
                let (ids, _) = tokenizer::encode(&tokenizer, &request.target_text, false)?;
                if ids.is_empty() {
                    return Err(ApiError::bad_input(format!("the target text {:?} tokenizes to nothing", request.target_text)).into());
                }
                TextTarget::Continuation(ids)
            }
            None => {
                // Captum's default: the model's greedy continuation of the unperturbed prompt.
                let prompt = features.ids(&vec![true; features.count()]).map_err(ApiError::from)?;
                let options = GenerationOptions {
                    max_new_tokens: if request.max_new_tokens == 0 { 25 } else { request.max_new_tokens.min(MAX_NEW_TOKENS) as usize },
                    sample: false,
                    seed: 0,
                    temperature: 1.0,
                    top_k: 0,
                    eos_token_id: None,
                };
                let generated = worker.generate_text(prompt, options, Box::new(|_| true)).await.map_err(in_model(&record))?;
                TextTarget::Continuation(generated.iter().map(|token| token.id).collect())
            }
        };
        let output_ids = match &target {
            TextTarget::Continuation(ids) => ids.clone(),
            TextTarget::Class(_) => Vec::new(),
        };
        let layer = if request.layer.is_empty() {
            let model_path = self.state.store.model_path(&record.id);
            let embedding = tokio::task::spawn_blocking(move || token_embedding(&model_path)).await.map_err(ApiError::from)??;
            embedding.map(|(path, _)| path).unwrap_or_default()
        } else {
            request.layer.clone()
        };
        let engine_request = TextAttributionRequest {
            features,
            target,
            method,
            probability,
            n_samples: if request.n_samples == 0 { 25 } else { request.n_samples as usize },
            seed: request.seed,
            layer,
            n_steps: if request.n_steps == 0 { 50 } else { request.n_steps.min(10_000) as usize },
        };
        let attribution = worker.attribute_text(engine_request).await.map_err(in_model(&record))?;
        let output_tokens: Vec<String> = match request.target_class {
            Some(class) => vec![format!("class {class}")],
            None => output_ids.iter().map(|&id| tokenizer::token(&tokenizer, id)).collect(),
        };
        let format = convert::figure_format(request.figure_format);
        let method_name = if request.method.is_empty() { "feature_ablation".to_string() } else { request.method.clone() };
        let figure_kind = request.figure_kind.clone();
        if !["", "tokens", "matrix", "bars"].contains(&figure_kind.as_str()) {
            return Err(ApiError::bad_input(format!("figure kind {figure_kind:?}: expected tokens, matrix or bars")).into());
        }
        let answer = tokio::task::spawn_blocking(move || -> ApiResult<proto::AttributeTextResponse> {
            let html = layerlens_render::token_html(
                &input_tokens,
                &attribution.seq_attr,
                Some(&format!("{method_name}: attribution to {}", output_tokens.join(""))),
            )?;
            let title = format!("{method_name}: which tokens drove {}", output_tokens.join(""));
            let figure = match format {
                Some(format) => Some(convert::figure(match figure_kind.as_str() {
                    "matrix" if !attribution.token_attr.is_empty() => {
                        let values: Vec<f64> = attribution.token_attr.iter().flatten().copied().collect();
                        layerlens_render::token_matrix(&title, &input_tokens, &output_tokens, &values, format)?
                    }
                    "bars" => layerlens_render::sequence_bars(&title, &input_tokens, &attribution.seq_attr, format)?,
                    _ => layerlens_render::token_heat_map(&title, &input_tokens, &attribution.seq_attr, format)?,
                })),
                None => None,
            };
            Ok(proto::AttributeTextResponse {
                method: method_name,
                input_tokens,
                output_tokens,
                seq_attr: attribution.seq_attr,
                token_attr: attribution.token_attr.into_iter().flatten().collect(),
                output_probs: attribution.output_probs,
                html,
                figure,
                passes: attribution.passes,
                sequences: attribution.sequences,
                output_ids,
            })
        })
        .await
        .map_err(ApiError::from)??;
        Ok(Response::new(answer))
    }
}
