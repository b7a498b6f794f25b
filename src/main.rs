//! The `webvlm` command line: convert, generate, bench. Native only (on wasm32 the crate is
//! a library for the browser and `main` does nothing). User errors print
//! `error: <message>` and exit with status 1.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use clap::{Args, Parser, Subcommand};
    use std::io::{IsTerminal, Write};
    use std::path::PathBuf;
    use std::sync::Arc;
    use webvlm::chat::Message;
    use webvlm::convert::{ConvertOptions, WeightChoice};
    use webvlm::engine::bench::{decode_bench, DecodeBench};
    use webvlm::engine::{ChatTurn, Engine, GenerateParams};
    use webvlm::gpu::{GpuContext, GpuOptions};
    use webvlm::model::llava::VisionLoadOptions;
    use webvlm::model::LoadOptions;
    use webvlm::quant::WeightFormat;
    use webvlm::sampler::SamplerConfig;
    use webvlm::vision::image::decode;
    use webvlm::{Error, Result};

    #[derive(Parser)]
    #[command(name = "webvlm", version, about = "Quantized Llama/LLaVA-family models on the CPU and in the browser")]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Subcommand)]
    enum Cmd {
        /// Convert a checkpoint (HF folder, GGUF file, converted folder) to webvlm shards.
        Convert(ConvertArgs),
        /// Generate text from a prompt.
        Generate(GenerateArgs),
        /// Measure GEMV kernel throughput and (with --model) decode speed.
        Bench(BenchArgs),
        /// Compare a converted model with its f32 source on held-out text (KL, top-1, perplexity).
        Eval(EvalArgs),
    }

    #[derive(Args)]
    struct CalibArgs {
        /// Block linears: rtn (no calibration unless --calibrate), awq, gptq or awq+gptq.
        #[arg(long, default_value = "rtn")]
        method: String,
        /// Calibration data: a text file, `builtin` (CPython's pydoc_data prose; for LLaVA also the built-in
        /// photos and generated scenes with questions, data/calib-vlm), or for LLaVA a
        /// folder of images with prompts (`cat.png` + `cat.txt`: question, blank line, answer).
        #[arg(long)]
        calibrate: Option<String>,
        /// Keep this share of block-linear parameters INT4, the most sensitive rest INT8.
        #[arg(long)]
        ratio: Option<f64>,
        /// With --ratio R: choose INT4/INT8 by blocks of layers cut by activation entropy (Q-VLM style).
        #[arg(long)]
        entropy_guided: bool,
        /// Blocks for --entropy-guided (default: about three layers per block).
        #[arg(long, requires = "entropy_guided")]
        entropy_blocks: Option<usize>,
        /// GPTQ: process columns by decreasing Hessian diagonal.
        #[arg(long)]
        act_order: bool,
        /// Calibration tokens (at most).
        #[arg(long, default_value_t = 2048)]
        calib_tokens: usize,
        /// Held-out tokens evaluated for quality.json (at most).
        #[arg(long, default_value_t = 1024)]
        eval_tokens: usize,
    }

    #[derive(Args)]
    struct EvalArgs {
        /// Converted (or any) model to evaluate.
        #[arg(long)]
        model: PathBuf,
        /// Its source, run in f32 as the reference.
        #[arg(long)]
        reference: PathBuf,
        /// Text whose held-out part is evaluated: a file or `builtin` (LLaVA: also an image folder;
        /// `builtin` is then the built-in image set's held-out items).
        #[arg(long, default_value = "builtin")]
        text: String,
        /// Held-out tokens evaluated (at most).
        #[arg(long, default_value_t = 1024)]
        eval_tokens: usize,
    }

    #[derive(Args)]
    struct ConvertArgs {
        /// Source checkpoint.
        src: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// int4, int8, f16, f32 or ternary (LLaVA: the language model).
        #[arg(long, default_value = "int4")]
        weights: String,
        /// LLaVA vision tower: int8 (the default), int4, f16, f32 or ternary. The projector is f16.
        #[arg(long)]
        vision_weights: Option<String>,
        /// SmoothQuant α for an INT8 LLaVA vision tower (folded into its LayerNorms; the tower
        /// may then run W8A8).
        #[arg(long, default_value_t = 0.6)]
        smooth_alpha: f32,
        /// Do not smooth the vision tower.
        #[arg(long)]
        no_smooth: bool,
        /// Images calibrating the smoothing (default: an image --calibrate folder, else generated images).
        #[arg(long)]
        smooth_images: Option<PathBuf>,
        /// INT4 group size (32, 64 or 128).
        #[arg(long, default_value_t = 64)]
        group_size: usize,
        /// Symmetric INT4 (the default).
        #[arg(long, conflicts_with = "asym")]
        sym: bool,
        /// Asymmetric INT4 (a per-group minimum).
        #[arg(long)]
        asym: bool,
        /// Overwrite a non-empty output folder.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        calib: CalibArgs,
    }

    #[derive(Args)]
    struct GenerateArgs {
        /// GGUF file, HF folder or converted folder.
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        /// An image for a LLaVA model (repeatable). Without --chat, a prompt with no `<image>`
        /// gets one `<image>\n` per image in front.
        #[arg(long = "image")]
        images: Vec<PathBuf>,
        /// Refuse images with more pixels than this (checked from the header).
        #[arg(long, default_value_t = webvlm::vision::image::DEFAULT_MAX_PIXELS)]
        max_pixels: u64,
        /// Wrap the prompt as a user message in the model's chat template.
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 128)]
        max_new_tokens: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// 0 = no cut.
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 1.0)]
        repetition_penalty: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        load: LoadArgs,
        /// Print one JSON object instead of streaming text.
        #[arg(long)]
        json: bool,
    }

    #[derive(Args)]
    struct LoadArgs {
        /// Quantize on load: int4 (with --group-size), int8, f16, f32 or a full name such as
        /// int4_asym_g32. Default: keep the checkpoint's formats.
        #[arg(long)]
        weights: Option<String>,
        /// INT4 group size for `--weights int4`.
        #[arg(long, default_value_t = 64)]
        group_size: usize,
        /// Asymmetric INT4 for `--weights int4`.
        #[arg(long)]
        asym: bool,
        /// Quantize a LLaVA vision tower on load (same names as --weights). Default: as stored.
        #[arg(long)]
        vision_weights: Option<String>,
        /// Worker threads (default: all cores; `bench` measures 1 and all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Where the decoder runs: `auto` (a hardware GPU when there is one, else the CPU),
        /// `gpu` (fail without one; software adapters such as lavapipe count) or `cpu`.
        /// `bench` defaults to the CPU benchmarks; `--backend gpu` runs the GPU ones.
        #[arg(long, value_parser = ["auto", "gpu", "cpu"])]
        backend: Option<String>,
    }

    #[derive(Args)]
    struct BenchArgs {
        /// Also measure decode speed of this model.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Decode steps timed with --model.
        #[arg(long, default_value_t = 64)]
        decode_tokens: usize,
        /// Skip the GEMV kernel benchmark (only decode speed with --model).
        #[arg(long)]
        no_gemv: bool,
        /// Only the vision-tower encode benchmark (CLIP ViT-L/14-336, LLaVA-1.5-7B shapes).
        #[arg(long, conflicts_with = "no_vision")]
        vision: bool,
        /// Skip the vision-tower encode benchmark.
        #[arg(long)]
        no_vision: bool,
        /// Vision formats to measure, comma-separated (f32, int8, w8a8).
        #[arg(long, default_value = "int8,w8a8,f32", value_delimiter = ',')]
        vision_formats: Vec<String>,
        /// Timed encodes per vision configuration (the best counts).
        #[arg(long, default_value_t = 1)]
        vision_runs: usize,
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long)]
        json: bool,
    }

    pub fn run() -> Result<()> {
        let cli = Cli::parse();
        match cli.cmd {
            Cmd::Convert(a) => convert(a),
            Cmd::Generate(a) => {
                set_threads(a.load.threads)?;
                generate(a)
            }
            Cmd::Bench(a) => bench(a),
            Cmd::Eval(a) => eval(a),
        }
    }

    /// `--method` etc. as a calibration config (`None`: plain RTN).
    fn calib_config(a: &CalibArgs) -> Result<Option<webvlm::calib::CalibConfig>> {
        let method: webvlm::calib::Method = a.method.parse()?;
        let Some(spec) = &a.calibrate else {
            if method != webvlm::calib::Method::Rtn || a.ratio.is_some() || a.entropy_guided {
                return Err(Error::Invalid(
                    "--method awq/gptq, --ratio and --entropy-guided need --calibrate FILE|builtin".into(),
                ));
            }
            return Ok(None);
        };
        Ok(Some(webvlm::calib::CalibConfig {
            method,
            ratio: a.ratio,
            spec: spec.parse()?,
            act_order: a.act_order,
            calib_tokens: a.calib_tokens,
            eval_tokens: a.eval_tokens,
            entropy_blocks: a.entropy_guided.then_some(a.entropy_blocks.unwrap_or(0)),
            ..Default::default()
        }))
    }

    /// A progress callback `(stage, done, total)` drawing one bar on a terminal.
    fn stage_bar() -> (Option<indicatif::ProgressBar>, impl FnMut(&str, usize, usize)) {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template("{msg:>10} {bar:40} {pos}/{len} {elapsed}")
                .expect("static progress template");
            b.set_style(style);
            b
        });
        let b2 = bar.clone();
        (bar, move |stage: &str, done: usize, total: usize| {
            if let Some(b) = &b2 {
                b.set_message(stage.to_string());
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
        })
    }

    fn eval(a: EvalArgs) -> Result<()> {
        let c = webvlm::calib::CalibConfig { eval_tokens: a.eval_tokens, ..Default::default() };
        let (bar, mut cb) = stage_bar();
        let q = webvlm::calib::run::eval_paths(&a.model, &a.reference, &a.text.parse()?, &c, &mut cb)?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        println!("{}", serde_json::to_string_pretty(&q)?);
        Ok(())
    }

    fn set_threads(n: Option<usize>) -> Result<()> {
        if let Some(n) = n {
            if n == 0 {
                return Err(Error::Invalid("--threads must be at least 1".into()));
            }
            webvlm::par::set_threads(n);
        }
        Ok(())
    }

    impl LoadArgs {
        fn format(&self, name: Option<&str>) -> Result<Option<WeightFormat>> {
            Ok(match name {
                None => None,
                Some("int4") => Some(WeightFormat::parse(&format!(
                    "int4_{}_g{}",
                    if self.asym { "asym" } else { "sym" },
                    self.group_size
                ))?),
                Some(s) => Some(WeightFormat::parse(s)?),
            })
        }
        fn options(&self) -> Result<LoadOptions> {
            Ok(LoadOptions { weights: self.format(self.weights.as_deref())?, context_len: None })
        }
        fn vision(&self) -> Result<VisionLoadOptions> {
            Ok(VisionLoadOptions { tower: self.format(self.vision_weights.as_deref())? })
        }
    }

    fn convert(a: ConvertArgs) -> Result<()> {
        let opts = ConvertOptions {
            weights: a.weights.parse::<WeightChoice>()?,
            group_size: a.group_size,
            sym: !a.asym,
            force: a.force,
            vision_weights: a.vision_weights.as_deref().map(str::parse::<WeightChoice>).transpose()?,
            calib: calib_config(&a.calib)?,
            smooth_alpha: (!a.no_smooth).then_some(a.smooth_alpha),
            smooth_images: a.smooth_images.clone(),
            ..Default::default()
        };
        let (cbar, mut calib_cb) = stage_bar();
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .expect("static progress template");
            b.set_style(style);
            b
        });
        let report = webvlm::convert::convert_with(
            &a.src,
            &a.out,
            &opts,
            &mut |p| {
                if let Some(b) = &bar {
                    b.set_length(p.total as u64);
                    b.set_position(p.done as u64);
                    b.set_message(format!("{} ({})", p.name, p.format.name()));
                }
            },
            &mut calib_cb,
        )?;
        if let Some(b) = cbar {
            b.finish_and_clear();
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        let formats: Vec<String> = report.formats.iter().map(|(f, n)| format!("{n} {f}")).collect();
        eprintln!(
            "wrote {} tensors ({}) in {} shards, {:.1} MiB, to {}",
            report.tensors,
            formats.join(", "),
            report.shards,
            report.bytes as f64 / (1u64 << 20) as f64,
            a.out.display()
        );
        Ok(())
    }

    /// Prompt ids with one image token per image (unexpanded).
    fn prompt_ids(engine: &Engine, a: &GenerateArgs) -> Result<Vec<u32>> {
        let n = a.images.len();
        if a.chat {
            if engine.llava().is_some() {
                let turn = ChatTurn { role: "user".into(), text: a.prompt.clone(), images: n };
                return engine.chat_prompt_ids_with_images(&[turn]);
            }
            return engine.chat_prompt_ids(&[Message { role: "user".into(), content: a.prompt.clone() }]);
        }
        let tag = "<image>";
        let text = if n > 0 && !a.prompt.contains(tag) {
            format!("{}{}", format!("{tag}\n").repeat(n), a.prompt)
        } else {
            a.prompt.clone()
        };
        engine.encode_with_images(&text, true)
    }

    /// The GPU `--backend` asks for (`auto` skips software adapters); `None`: the CPU.
    fn open_gpu(backend: &str) -> Result<Option<Arc<GpuContext>>> {
        if backend == "cpu" {
            return Ok(None);
        }
        match GpuContext::new_blocking(&GpuOptions::default()) {
            Ok(c) if backend == "auto" && c.info.device_type == "Cpu" => {
                eprintln!("webvlm: only a software GPU ({}) was found; running on the CPU", c.info.name);
                Ok(None)
            }
            Ok(c) => Ok(Some(Arc::new(c))),
            Err(e) if backend == "auto" => {
                eprintln!("webvlm: no GPU ({e}); running on the CPU");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Load `model` on the backend `load` asks for. A converted folder goes to the GPU one
    /// shard at a time, the decoder's matrices never held in memory; other checkpoints are
    /// built on the CPU and uploaded.
    fn load_engine(model: &std::path::Path, load: &LoadArgs) -> Result<Engine> {
        let backend = load.backend.as_deref().unwrap_or("auto");
        let (opts, vopts) = (load.options()?, load.vision()?);
        let gpu = open_gpu(backend)?;
        if let Some(ctx) = &gpu {
            if model.join("manifest.json").exists() && opts.weights.is_none() {
                match webvlm::engine::stream::load_dir_with(
                    model,
                    opts,
                    &vopts,
                    Some((ctx.clone(), None)),
                    backend == "auto",
                ) {
                    Err(e @ Error::Gpu(_)) if backend == "auto" => {
                        eprintln!("webvlm: the model does not fit the GPU ({e}); running on the CPU")
                    }
                    r => return r,
                }
                return Engine::new_with_vision(webvlm::io::open(model)?, &opts, &vopts);
            }
        }
        let mut engine = Engine::new_with_vision(webvlm::io::open(model)?, &opts, &vopts)?;
        if let Some(ctx) = gpu {
            match engine.use_gpu(ctx, None) {
                Err(e) if backend == "auto" => {
                    eprintln!("webvlm: the model does not fit the GPU ({e}); running on the CPU")
                }
                r => r?,
            }
        }
        Ok(engine)
    }

    fn generate(a: GenerateArgs) -> Result<()> {
        let mut engine = load_engine(&a.model, &a.load)?;
        let images = a
            .images
            .iter()
            .map(|p| {
                let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
                decode(&bytes, a.max_pixels).map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))
            })
            .collect::<Result<Vec<_>>>()?;
        let prompt_ids = prompt_ids(&engine, &a)?;
        let params = GenerateParams {
            max_new_tokens: a.max_new_tokens,
            sampling: SamplerConfig {
                temperature: a.temperature,
                top_k: a.top_k,
                top_p: a.top_p,
                repetition_penalty: a.repetition_penalty,
                seed: a.seed,
            },
            stop: Vec::new(),
        };
        let json = a.json;
        let mut stdout = std::io::stdout();
        engine.start_with_images(&prompt_ids, &images, params)?;
        let mut stop = None;
        while let Some(ev) = engine.step()? {
            // A closed pipe (`| head`) stops generation instead of panicking.
            if !json && write!(stdout, "{}", ev.text).and_then(|_| stdout.flush()).is_err() {
                stop = Some(webvlm::engine::StopReason::Caller);
                break;
            }
        }
        let stop = stop.or(engine.stop_reason_of_run());
        let t = engine.timings().clone();
        if json {
            let mut top: Vec<(u32, f32)> =
                engine.first_logits().iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
            top.sort_by(|x, y| y.1.total_cmp(&x.1));
            top.truncate(10);
            let doc = serde_json::json!({
                "prompt_ids": engine.prompt_ids(),
                "image_tokens": engine.image_tokens(),
                "generated_ids": engine.generated_ids(),
                "text": engine.generated_text(),
                "stop": stop,
                "top_logits": top,
                "timings": t,
                "backend": engine.backend().name(),
                "fallback": engine.fallback_reason(),
                "gpu": engine.gpu_decoder().map(|d| serde_json::json!({
                    "adapter": d.context().info.clone(),
                    "dispatches_per_token": d.dispatches_per_token(),
                })),
            });
            println!("{doc}");
        } else {
            println!();
            let img = if images.is_empty() {
                String::new()
            } else {
                format!(
                    "{} images ({} tokens) encoded in {:.0} ms, ",
                    images.len(),
                    engine.image_tokens(),
                    t.image_encode_ms
                )
            };
            let fell = engine.fallback_reason().map(|r| format!(" (left the GPU: {r})")).unwrap_or_default();
            eprintln!(
                "[{}{fell}: load {:.0} ms, {img}prefill {} tokens in {:.0} ms, decode {:.1} tokens/s]",
                engine.backend().name(),
                t.load_ms,
                t.prefill_tokens,
                t.prefill_ms,
                t.decode_tokens_per_s
            );
        }
        Ok(())
    }

    /// `bench --backend gpu`: kernels, the vision tower, then the model's decode (and, for a
    /// LLaVA model, an image prompt's time to first token) on the GPU.
    fn bench_gpu(a: &BenchArgs) -> Result<()> {
        let ctx = Arc::new(GpuContext::new_blocking(&GpuOptions::default())?);
        let mut doc = serde_json::Map::new();
        let kernels = webvlm::bench_gpu::kernels(&ctx, 20)?;
        if !a.json {
            webvlm::bench_gpu::print_kernels(&kernels);
        }
        if !a.no_vision {
            let clock = std::time::Instant::now();
            let now_ms = || clock.elapsed().as_secs_f64() * 1e3;
            let mut rows = Vec::new();
            for f in &a.vision_formats {
                let r = webvlm::bench_gpu_vision::tower(ctx.clone(), f, a.vision_runs, &now_ms)?;
                if !a.json {
                    webvlm::bench_gpu_vision::print_tower(&r);
                }
                rows.push(r);
            }
            doc.insert("gpu_vision".into(), serde_json::to_value(&rows)?);
        }
        if let (Some(path), false) = (&a.model, a.vision) {
            let mut engine = Engine::new_with_vision(webvlm::io::open(path)?, &a.load.options()?, &a.load.vision()?)?;
            let name = path.display().to_string();
            let r = webvlm::bench_gpu::decode(&mut engine, ctx.clone(), &name, a.decode_tokens, kernels.copy_gbps)?;
            if !a.json {
                println!(
                    "decode {name} on the GPU: {:.1} tokens/s ({:.1}% of copy bandwidth over {:.1} MiB of weights), {} dispatches/token, prefill {} tokens in {:.0} ms",
                    r.decode_tokens_per_s,
                    100.0 * r.share_of_copy,
                    r.weight_bytes as f64 / 1048576.0,
                    r.dispatches_per_token.unwrap_or(0),
                    r.prompt_tokens,
                    r.prefill_ms
                );
            }
            doc.insert("gpu_decode".into(), serde_json::to_value(&r)?);
            if let Some(t) = webvlm::bench_gpu_vision::image_ttft(&mut engine, 3)? {
                if !a.json {
                    webvlm::bench_gpu_vision::print_ttft(&name, &t);
                }
                doc.insert("gpu_image_ttft".into(), serde_json::to_value(&t)?);
            }
        }
        doc.insert("gpu".into(), serde_json::to_value(&kernels)?);
        if a.json {
            println!("{}", serde_json::Value::Object(doc));
        }
        Ok(())
    }

    fn bench(a: BenchArgs) -> Result<()> {
        if a.load.backend.as_deref() == Some("gpu") {
            return bench_gpu(&a);
        }
        let mut doc = serde_json::Map::new();
        let mut gopts = webvlm::bench::GemvOptions::default();
        if let Some(t) = a.load.threads {
            if t == 0 {
                return Err(Error::Invalid("--threads must be at least 1".into()));
            }
            gopts.threads = vec![t];
        }
        if !a.no_gemv && !a.vision {
            let report = webvlm::bench::run(&gopts);
            if !a.json {
                webvlm::bench::print_report(&report);
            }
            doc.insert("gemv".into(), serde_json::to_value(&report)?);
        }
        if !a.no_vision {
            let rows = webvlm::bench_vision::run_native(&a.vision_formats, &gopts.threads, a.vision_runs)?;
            if !a.json {
                webvlm::bench_vision::print_rows(&rows);
            }
            doc.insert("vision".into(), serde_json::to_value(&rows)?);
        }
        if let (Some(path), false) = (&a.model, a.vision) {
            let runs = bench_decode(path, &a, &gopts.threads)?;
            doc.insert("decode".into(), serde_json::to_value(&runs)?);
        }
        if a.json {
            println!("{}", serde_json::Value::Object(doc));
        }
        Ok(())
    }

    /// Decode tokens/s of the model at every thread count, through the engine's step loop.
    fn bench_decode(path: &std::path::Path, a: &BenchArgs, threads: &[usize]) -> Result<Vec<DecodeBench>> {
        let mut engine = Engine::new(webvlm::io::open(path)?, &a.load.options()?)?;
        let prompt = engine.tokenizer().encode("The capital of France is", true)?;
        let mut runs = Vec::new();
        for &t in threads {
            webvlm::par::set_threads(t);
            let r = decode_bench(&mut engine, &prompt, a.decode_tokens)?;
            if !a.json {
                println!(
                    "decode {}: {} thread(s), {:.1} tokens/s ({} tokens after a {}-token prompt; weights {}, {:.1} MiB)",
                    path.display(),
                    r.threads,
                    r.decode_tokens_per_s,
                    r.decode_tokens,
                    r.prompt_tokens,
                    r.weights,
                    r.weight_bytes as f64 / (1u64 << 20) as f64
                );
            }
            runs.push(r);
        }
        Ok(runs)
    }
}
