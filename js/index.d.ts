// Types of the webvlm package (hand-written; the JavaScript is in index.js and its imports).

export type Backend = 'auto' | 'webgpu' | 'cpu';
export type ContextPolicy = 'error' | 'drop_oldest';

export interface FileProgress {
  file: string;
  loaded: number;
  total: number;
  state: 'queued' | 'downloading' | 'verifying' | 'cached' | 'done';
}

export type LoadProgress =
  | {
      phase: 'download';
      /** Bytes in hand (cached or downloaded) over all files, and their total. */
      loaded: number;
      total: number;
      /** Network rate over the last few seconds (0 while everything comes from the cache). */
      bytesPerSecond: number;
      /** Seconds left at that rate; null while unknown. */
      etaSeconds: number | null;
      elapsedMs: number;
      files: FileProgress[];
    }
  | { phase: 'build' }
  | { phase: 'ready'; backend: 'webgpu' | 'cpu' };

export interface CreateEngineOptions {
  /** URL of the model's manifest.json (or of its folder, ending in `/`); relative to the page. */
  model: string | URL;
  backend?: Backend;
  onProgress?: (p: LoadProgress) => void;
  /** Run the engine in a module Web Worker (default true); false runs it in this thread. */
  worker?: boolean;
  /** What to do when a conversation outgrows the context window (default 'error'). */
  context?: ContextPolicy;
  /** Files downloaded at a time (default 3). */
  concurrency?: number;
  /** Resumed retries per file after a network failure within one load (default 2). */
  retries?: number;
  gpuBudgetMib?: number;
  /** Keep the model in Cache Storage (default true). */
  useCache?: boolean;
  /** Ask for persistent storage with navigator.storage.persist() (default true; Firefox asks the user). */
  persist?: boolean;
  /** Cancels the download (createEngine rejects with an AbortError; saved pieces stay for a resume). */
  signal?: AbortSignal;
  /** Where the one-thread build's webvlm_bg.wasm is, when a bundler did not emit it beside the
   * glue (the engine then runs on one thread). */
  wasmUrl?: string | URL;
  /** CPU threads: 'auto' (default) = one per logical core when the page is cross-origin isolated
   * (SharedArrayBuffer; the threaded wasm build with a pool of Web Workers) and the engine runs
   * in a worker, else 1; a number asks for that many (1: the one-thread build). */
  threads?: 'auto' | number;
  /** The SIMD flavour of the CPU build: 'auto' (default) = relaxed SIMD where the browser has it
   * (faster integer dot products), else SIMD128; 'simd128' forces the plain build. */
  simd?: 'auto' | 'relaxed' | 'simd128';
}

export type ImageSource = Blob | ImageBitmap | ArrayBuffer | ArrayBufferView;

export type ContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: { url: string } | string }
  | { type: 'image'; image: ImageSource };

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant';
  content: string | ContentPart[] | null;
}

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  /** Default 256. */
  max_tokens?: number;
  max_completion_tokens?: number;
  /** Default 0 (greedy). */
  temperature?: number;
  top_p?: number;
  /** Sampling seed (default: random when temperature > 0). */
  seed?: number;
  stop?: string | string[];
  signal?: AbortSignal;
  model?: string;
  n?: 1;
  /** Overrides the engine's context policy for this request. */
  context?: ContextPolicy;
}

export interface Timings {
  load_ms: number;
  prefill_ms: number;
  /** Prompt tokens actually run through the model (the rest came from the KV cache). */
  prefill_tokens: number;
  decode_ms: number;
  decode_tokens: number;
  decode_tokens_per_s: number;
  image_encode_ms: number;
  /** Where the run's new images were encoded; absent (null) when every image came from the cache. */
  image_encoder?: 'gpu' | 'cpu' | null;
}

/** webvlm's own fields, on a response and on a stream's final chunk. */
export interface WebvlmExtras {
  backend: 'webgpu' | 'cpu';
  timings: Timings;
  /** Why the answer finished on the CPU although WebGPU was in use (device lost, out of memory). */
  fallback_reason: string | null;
  image_tokens: number;
  /** Messages left out by the 'drop_oldest' context policy. */
  dropped_messages: number;
  /** The engine's own reason: eos | stop_string | max_new_tokens | context_full | aborted. */
  finish_reason: string;
  /** The answer's token ids. */
  ids: number[];
  /** Milliseconds from the engine starting the request to its first token (prefill included). */
  ttft_ms: number | null;
  /** GPU dispatches per decode token (null on the CPU). */
  dispatches_per_token: number | null;
  /** Shards read again from Cache Storage since the load (the CPU's weights after a lost GPU). */
  shards_reloaded: number;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: [{ index: 0; message: { role: 'assistant'; content: string }; finish_reason: FinishReason; logprobs: null }];
  usage: Usage;
  webvlm: WebvlmExtras;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: [{ index: 0; delta: { role?: 'assistant'; content?: string }; finish_reason: FinishReason | null;
    logprobs: null }];
  /** On the final chunk. */
  usage?: Usage;
  webvlm?: WebvlmExtras;
}

export declare class ChunkStream implements AsyncIterable<ChatCompletionChunk> {
  /** Aborts the generation (breaking out of `for await` does too). */
  readonly controller: AbortController;
  [Symbol.asyncIterator](): AsyncIterator<ChatCompletionChunk>;
}

export interface LoadInfo {
  model: string;
  backend: 'webgpu' | 'cpu';
  fallback_reason: string | null;
  adapter: Record<string, unknown> | null;
  supports_images: boolean;
  load_ms: number;
  download: {
    fromCache: string[];
    downloaded: string[];
    corrupt: string[];
    resumed: { file: string; offset: number }[];
    /** Files Cache Storage refused as one entry (too large), kept as 8 MiB pieces instead. */
    cachedInPieces: string[];
    /** Files the cache could keep neither way (quota): the next load downloads them again. */
    notCached: { file: string; reason: string }[];
  };
  /** CPU threads the wasm build runs on (1: the one-thread build). */
  threads: number;
  /** Why one thread (not cross-origin isolated, one asked for, ...), or null. */
  threads_reason: string | null;
  /** The CPU build's SIMD flavour. */
  simd: 'relaxed' | 'simd128';
  /** Why not relaxed SIMD (unsupported, asked for, ...), or null. */
  simd_reason: string | null;
}

export declare class Engine {
  readonly info: LoadInfo;
  readonly model: string;
  readonly backend: 'webgpu' | 'cpu';
  readonly chat: {
    completions: {
      create(body: ChatCompletionRequest & { stream: true }, options?: { signal?: AbortSignal }): Promise<ChunkStream>;
      create(body: ChatCompletionRequest & { stream?: false }, options?: { signal?: AbortSignal }): Promise<ChatCompletion>;
      create(body: ChatCompletionRequest, options?: { signal?: AbortSignal }): Promise<ChatCompletion | ChunkStream>;
    };
  };
  /** Testing hooks: `loseDevice()` destroys the WebGPU device (the answer goes on on the CPU);
   * `threadPoolCheck()` runs a job on every CPU pool thread and a row-split matmul. */
  readonly debug: {
    loseDevice(): Promise<boolean>;
    threadPoolCheck(): Promise<{ threads: number; broadcast: number[]; max_abs_diff: number }>;
  };
  reset(): Promise<void>;
  unload(): Promise<void>;
}

export declare function createEngine(options: CreateEngineOptions): Promise<Engine>;

export interface CachedModel {
  /** The manifest URL. */
  url: string;
  cacheName: string;
  bytes: number;
  files: number;
  /** Every file of the manifest is cached (the model loads offline). */
  complete: boolean;
}

export declare function listCachedModels(): Promise<CachedModel[]>;
export declare function deleteCachedModel(model: string | URL): Promise<boolean>;
export declare function manifestUrlOf(model: string | URL, base?: string): string;
export declare const MAX_THREADS: number;
/** Whether this browser's WebAssembly has relaxed SIMD. */
export declare function relaxedSimdSupported(): boolean;
/** The SIMD flavour `simd` gives here (see CreateEngineOptions.simd). */
export declare function chooseSimd(requested?: 'auto' | 'relaxed' | 'simd128', env?: { supported?: boolean }): { relaxed: boolean; reason: string | null };
/** The wasm build `threads` gives here (see CreateEngineOptions.threads). */
export declare function chooseBuild(requested?: 'auto' | number,
  env?: { isolated?: boolean; cores?: number; canBlock?: boolean }): { threaded: boolean; threads: number; reason: string | null };

export declare class ModelLoadError extends Error {
  readonly code: 'network' | 'integrity' | 'quota' | 'http' | 'manifest';
}
export declare class ContextWindowError extends Error {
  readonly code: 'context_length_exceeded';
}

/** The engine cores behind `Engine` (the same contract; see core.js). */
export interface EngineCore {
  load(options: object, onProgress?: (p: LoadProgress) => void, signal?: AbortSignal): Promise<LoadInfo>;
  generate(request: object, hooks?: { onToken?: (text: string, id: number) => void; signal?: AbortSignal }): Promise<object>;
  loseDevice(): Promise<boolean>;
  threadPoolCheck(): Promise<{ threads: number; broadcast: number[]; max_abs_diff: number }>;
  reset(): Promise<void>;
  unload(): Promise<void>;
}
export declare class LocalCore implements EngineCore {
  load(options: object, onProgress?: (p: LoadProgress) => void, signal?: AbortSignal): Promise<LoadInfo>;
  generate(request: object, hooks?: { onToken?: (text: string, id: number) => void; signal?: AbortSignal }): Promise<object>;
  loseDevice(): Promise<boolean>;
  threadPoolCheck(): Promise<{ threads: number; broadcast: number[]; max_abs_diff: number }>;
  reset(): Promise<void>;
  unload(): Promise<void>;
}
export declare class WorkerCore extends LocalCore {}
