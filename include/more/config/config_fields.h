// The single list of configuration options (name, field, help). Included by config.h.
#pragma once

namespace more {

template <typename C, typename F>
void VisitConfig(C& c, F&& f) {
  f("model.path", c.model.path, "Hugging Face LLaMA directory (config.json + safetensors)");
  f("model.dtype", c.model.dtype, "base weight dtype: auto (bf16 on cuda and on CPUs with native bf16: AVX512-BF16 / AMX-BF16; else float32) | float32 | bfloat16");
  f("model.attention", c.model.attention,
    "causal attention: auto (fused where this LibTorch has it, else composed) | measure (the faster of those this "
    "build has, timed at start-up: fresh runs may then differ in their last bits) | fused "
    "(scaled_dot_product_attention, LibTorch >= 2.1) | composed (S x S scores); auto and measure: a resumed run "
    "keeps its checkpoint's choice");
  f("model.device", c.model.device, "cpu | cuda");
  f("adapter.method", c.adapter.method, "more | lora");
  f("adapter.rank", c.adapter.rank, "maximum LoRA rank r (MoRE experts are ranks 1..r)");
  f("adapter.alpha", c.adapter.alpha, "LoRA alpha (scale alpha / r)");
  f("adapter.dropout", c.adapter.dropout, "dropout on the adapter input");
  f("adapter.targets", c.adapter.targets, "adapted linears: q,k,v,o,gate,up,down");
  f("adapter.scaling", c.adapter.scaling, "rank scaling: paper | none | per_component");
  f("adapter.selection", c.adapter.selection, "ste (hard + straight-through) | soft (ablation)");
  f("adapter.lambda_cl", c.adapter.lambda_cl, "contrastive loss weight lambda (0 disables it)");
  f("adapter.tau", c.adapter.tau, "contrastive temperature tau");
  f("adapter.init_from", c.adapter.init_from,
    "start from this PEFT LoRA directory (A, B into the first ranks; ignored when resuming)");
  f("adapter.experts", c.adapter.experts,
    "ranks that are experts, ascending, e.g. 2,4,6,8 (ablation 'w/ subset experts'); empty = every rank 1..r");
  f("adapter.gate_input", c.adapter.gate_input,
    "task (the gate reads e_t) | shared (one learned input for all tasks: ablation 'w/o task embeddings'; "
    "needs lambda_cl = 0)");
  f("adapter.gate", c.adapter.gate,
    "learned (the paper: the gate trains through the straight-through estimator) | frozen_at_init (the "
    "paper's released code: each task's rank is the gate's choice at initialisation and never changes; "
    "the gate gets no gradient; needs method = more, selection = ste, gate_input = task)");
  f("adapter.task_emb_init", c.adapter.task_emb_init,
    "task embedding init: kaiming (N(0, 2/d_in), the paper's) | normal (N(0, task_emb_std^2))");
  f("adapter.task_emb_std", c.adapter.task_emb_std, "std of adapter.task_emb_init = normal");
  f("adapter.dtype", c.adapter.dtype,
    "compute dtype of the adapters' A/B products: float32 | bfloat16 (needs a bf16 base; parameters, "
    "gradients, optimizer state and checkpoints stay fp32: fp32 master weights)");
  f("data.train", c.data.train, "training shard directory or files (comma separated)");
  f("data.eval", c.data.eval, "eval shard directory; empty = data.train, split 'eval'");
  f("data.tokenizer", c.data.tokenizer, "tokenizer file the shards were made with (a SentencePiece .model or a tokenizer.json); empty = <model.path>/tokenizer.model or tokenizer.json");
  f("data.tasks", c.data.tasks, "comma-separated task subset; empty = all tasks");
  f("data.bucket", c.data.bucket, "pad sequence length to a multiple of this");
  f("data.sampling", c.data.sampling, "task sampling: paper | uniform | proportional | temperature");
  f("data.temperature", c.data.temperature, "T for temperature sampling (|D_t|^(1/T))");
  f("data.prefetch", c.data.prefetch, "micro-batches prefetched by the loader thread");
  f("data.packing", c.data.packing, "pack each training micro-batch's examples into rows of up to max_len tokens (first-fit decreasing; attention and positions per example); evaluation stays unpacked");
  f("data.pack_len", c.data.pack_len, "with data.packing: rows of up to this many tokens, from the shards' max_len to the model's max_position_embeddings (positions restart per example); 0 = the shards' max_len");
  f("train.steps", c.train.steps, "optimizer steps");
  f("train.global_batch", c.train.global_batch, "samples per step over all data-parallel ranks");
  f("train.micro_batch", c.train.micro_batch, "samples per micro-batch per rank");
  f("train.lr", c.train.lr, "peak learning rate");
  f("train.warmup", c.train.warmup, "linear warmup steps");
  f("train.min_lr_ratio", c.train.min_lr_ratio, "final lr as a fraction of lr (linear decay)");
  f("train.weight_decay", c.train.weight_decay, "AdamW decoupled weight decay");
  f("train.beta1", c.train.beta1, "AdamW beta1");
  f("train.beta2", c.train.beta2, "AdamW beta2");
  f("train.eps", c.train.eps, "AdamW epsilon");
  f("train.grad_clip", c.train.grad_clip, "clip the global gradient L2 norm; 0 = off");
  f("train.seed", c.train.seed, "seed for init, dropout and sampling");
  f("train.log_every", c.train.log_every, "steps between metric lines");
  f("train.out_dir", c.train.out_dir, "run directory: metrics.jsonl, config, exports");
  f("train.threads", c.train.threads, "intra-op threads per rank; 0 = cores / local ranks");
  f("train.recompute_layers", c.train.recompute_layers,
    "activation recomputation: the first N layers of each pipeline stage keep only their input and rerun "
    "their forward in the backward; 0 = off, >= layers per stage = all");
  f("train.nan_policy", c.train.nan_policy, "non-finite loss: stop | skip");
  f("train.progress", c.train.progress, "rank-0 progress bar on a terminal");
  f("train.dump_grads", c.train.dump_grads, "write <out_dir>/grads/step-N.safetensors (synced grads)");
  f("eval.every", c.eval.every, "steps between evaluations; 0 = only at the end");
  f("eval.max_samples", c.eval.max_samples, "eval samples per task; 0 = all");
  f("eval.batch", c.eval.batch, "sequences per scoring forward");
  f("eval.at_start", c.eval.at_start, "evaluate before training (untrained baseline)");
  f("eval.dump", c.eval.dump,
    "also write <out_dir>/eval/step-N.jsonl: every scored sequence (token ids, first scored token, "
    "log-likelihood), for checks against other implementations");
  f("ckpt.dir", c.ckpt.dir, "checkpoint directory; empty = <train.out_dir>/checkpoints");
  f("ckpt.every", c.ckpt.every, "steps between checkpoints; 0 = only at the end");
  f("ckpt.keep_last", c.ckpt.keep_last, "checkpoints kept");
  f("ckpt.resume", c.ckpt.resume, "resume from <ckpt.dir>/latest when present");
  f("ckpt.allow_changes", c.ckpt.allow_changes,
    "on resume, let these settings differ from the checkpoint's (comma-separated keys, or all); "
    "others of adapter.scaling/selection/alpha/lambda_cl/tau/task_emb_init/task_emb_std/dtype, "
    "data.sampling/temperature/tasks are refused");
  f("transfer.from", c.transfer.from,
    "few-shot transfer: start from this MoRE checkpoint (a step directory or a checkpoint root)");
  f("transfer.tasks", c.transfer.tasks,
    "new=source task pairs (comma separated): a new task's embeddings start as the source task's");
  f("parallel.tp", c.parallel.tp, "tensor-parallel size");
  f("parallel.pp", c.parallel.pp, "pipeline-parallel size");
  f("parallel.dp", c.parallel.dp, "data-parallel size; 0 = world / (tp * pp)");
  f("parallel.schedule", c.parallel.schedule, "pipeline schedule: 1f1b | gpipe");
  f("parallel.timeout_s", c.parallel.timeout_s,
    "watchdog: a collective or point-to-point transfer that waits longer than this many seconds ends the job "
    "with a message naming the operation and the ranks that did not answer; 0 = off");
}

}  // namespace more
