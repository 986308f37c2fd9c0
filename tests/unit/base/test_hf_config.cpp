// Hugging Face LLaMA config.json parsing, validation and parameter counting.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/test_util.h"
#include "more/core/error.h"
#include "more/core/safetensors.h"
#include "more/model/hf_config.h"

namespace fs = std::filesystem;
using namespace more;

namespace {

using more::testing::ExpectError;
using more::testing::TempDir;

// LLaMA-2-7B's published config.json fields (the subset that matters).
nlohmann::json Llama2_7B() {
  return nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
    "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": null, "tie_word_embeddings": false, "torch_dtype": "float16",
    "transformers_version": "4.31.0.dev0", "use_cache": true, "vocab_size": 32000})");
}

}  // namespace

TEST(HfConfig, WrittenConfigParsesBack) {
  LlamaConfig c;
  c.vocab_size = 515;
  c.hidden_size = 96;
  c.intermediate_size = 160;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 777;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 500000.0;
  c.tie_word_embeddings = true;
  c.torch_dtype = "bfloat16";
  c.bos_token_id = 5;
  c.eos_token_id = 6;
  const nlohmann::json j = LlamaConfigToJson(c);
  EXPECT_EQ(j["architectures"], nlohmann::json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["hidden_act"], "silu");
  EXPECT_EQ(j["num_key_value_heads"], 2);

  TempDir dir;
  WriteFileAtomic(dir / "config.json", j.dump(2));
  for (const std::string& where : {dir.str(), dir / "config.json"}) {
    const LlamaConfig r = LoadLlamaConfig(where);
    EXPECT_EQ(r.vocab_size, 515);
    EXPECT_EQ(r.hidden_size, 96);
    EXPECT_EQ(r.intermediate_size, 160);
    EXPECT_EQ(r.num_hidden_layers, 3);
    EXPECT_EQ(r.num_attention_heads, 6);
    EXPECT_EQ(r.num_key_value_heads, 2);
    EXPECT_EQ(r.max_position_embeddings, 777);
    EXPECT_EQ(r.rms_norm_eps, 1e-6);
    EXPECT_EQ(r.rope_theta, 500000.0);
    EXPECT_TRUE(r.tie_word_embeddings);
    EXPECT_EQ(r.torch_dtype, "bfloat16");
    EXPECT_EQ(r.bos_token_id, 5);
    EXPECT_EQ(r.eos_token_id, 6);
    EXPECT_EQ(r.head_dim(), 16);
  }
}

TEST(HfConfig, RealLlama2ConfigAndParamCounts) {
  const LlamaConfig c = LlamaConfigFromJson(Llama2_7B(), "llama2-7b/config.json");
  EXPECT_EQ(c.head_dim(), 128);
  EXPECT_EQ(c.NumParams(), 6738415616LL);  // published LLaMA-2-7B size

  nlohmann::json j70 = Llama2_7B();
  j70["hidden_size"] = 8192;
  j70["intermediate_size"] = 28672;
  j70["num_hidden_layers"] = 80;
  j70["num_attention_heads"] = 64;
  j70["num_key_value_heads"] = 8;
  const LlamaConfig c70 = LlamaConfigFromJson(j70, "llama2-70b/config.json");
  EXPECT_EQ(c70.NumParams(), 68976648192LL);  // published LLaMA-2-70B size (GQA, 8 kv heads)

  LlamaConfig tied = c;
  tied.tie_word_embeddings = true;
  EXPECT_EQ(c.NumParams() - tied.NumParams(), c.vocab_size * c.hidden_size);

  // small hand count: V=10 D=4 I=6 L=1 H=2 KV=1 (hd 2)
  LlamaConfig s;
  s.vocab_size = 10;
  s.hidden_size = 4;
  s.intermediate_size = 6;
  s.num_hidden_layers = 1;
  s.num_attention_heads = 2;
  s.num_key_value_heads = 1;
  // embed 40 + q 16 + k 8 + v 8 + o 16 + mlp 72 + norms 8 + final norm 4 + lm_head 40
  EXPECT_EQ(s.NumParams(), 40 + 16 + 8 + 8 + 16 + 72 + 8 + 4 + 40);
}

TEST(HfConfig, KvHeadsDefaultToAttentionHeadsAndOptionalDefaults) {
  const nlohmann::json j = {{"vocab_size", 100},        {"hidden_size", 64},        {"intermediate_size", 128},
                            {"num_hidden_layers", 2},   {"num_attention_heads", 8}};
  const LlamaConfig c = LlamaConfigFromJson(j, "min.json");
  EXPECT_EQ(c.num_key_value_heads, 8);
  const LlamaConfig d;
  EXPECT_EQ(c.rms_norm_eps, d.rms_norm_eps);
  EXPECT_EQ(c.rope_theta, d.rope_theta);
  EXPECT_EQ(c.max_position_embeddings, d.max_position_embeddings);
  EXPECT_FALSE(c.tie_word_embeddings);

  nlohmann::json n = j;
  n["num_key_value_heads"] = nullptr;  // null: also the default
  EXPECT_EQ(LlamaConfigFromJson(n, "null.json").num_key_value_heads, 8);
  n["eos_token_id"] = {128001, 128009};  // newer configs list several EOS ids: first is used
  EXPECT_EQ(LlamaConfigFromJson(n, "eos.json").eos_token_id, 128001);
}

TEST(HfConfig, MissingOrMistypedRequiredField) {
  TempDir dir;
  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads"}) {
    nlohmann::json j = Llama2_7B();
    j.erase(field);
    WriteFileAtomic(dir / "config.json", j.dump());
    ExpectError([&] { LoadLlamaConfig(dir.str()); }, {dir / "config.json", field, "missing"});
  }
  nlohmann::json j = Llama2_7B();
  j["num_hidden_layers"] = "32";
  ExpectError([&] { LlamaConfigFromJson(j, "cfg.json"); }, {"cfg.json", "num_hidden_layers", "integer", "string"});
  j = Llama2_7B();
  j["hidden_size"] = 4096.5;
  ExpectError([&] { LlamaConfigFromJson(j, "cfg.json"); }, {"hidden_size", "integer"});
  j = Llama2_7B();
  j["rms_norm_eps"] = "tiny";
  ExpectError([&] { LlamaConfigFromJson(j, "cfg.json"); }, {"rms_norm_eps", "number"});
  j = Llama2_7B();
  j["tie_word_embeddings"] = 1;
  ExpectError([&] { LlamaConfigFromJson(j, "cfg.json"); }, {"tie_word_embeddings", "true or false"});
  ExpectError([&] { LlamaConfigFromJson(nlohmann::json::array(), "arr.json"); }, {"arr.json", "object"});
}

TEST(HfConfig, GqaAndShapeValidation) {
  nlohmann::json j = Llama2_7B();
  j["num_key_value_heads"] = 5;  // 32 % 5 != 0
  ExpectError([&] { LlamaConfigFromJson(j, "gqa.json"); },
              {"gqa.json", "num_attention_heads 32", "num_key_value_heads 5", "not divisible"});
  j = Llama2_7B();
  j["num_key_value_heads"] = 8;
  EXPECT_EQ(LlamaConfigFromJson(j, "ok.json").num_key_value_heads, 8);
  j = Llama2_7B();
  j["hidden_size"] = 4100;  // 4100 % 32 != 0
  ExpectError([&] { LlamaConfigFromJson(j, "h.json"); }, {"hidden_size 4100", "num_attention_heads 32"});
  j = Llama2_7B();
  j["num_hidden_layers"] = 0;
  ExpectError([&] { LlamaConfigFromJson(j, "l.json"); }, {"num_hidden_layers", "positive"});
  j = Llama2_7B();
  j["hidden_size"] = 96;  // head_dim 3: odd, rotary needs pairs
  ExpectError([&] { LlamaConfigFromJson(j, "odd.json"); }, {"head_dim 3", "even"});

  LlamaConfig c;
  c.num_key_value_heads = 0;
  ExpectError([&] { c.Validate("struct"); }, {"struct", "num_key_value_heads", "positive"});
}

TEST(HfConfig, UnsupportedVariantsAndFileErrors) {
  nlohmann::json j = Llama2_7B();
  j["hidden_act"] = "gelu";
  ExpectError([&] { LlamaConfigFromJson(j, "act.json"); }, {"hidden_act", "gelu"});
  j = Llama2_7B();
  j["attention_bias"] = true;
  ExpectError([&] { LlamaConfigFromJson(j, "b.json"); }, {"attention_bias"});

  TempDir dir;
  ExpectError([&] { LoadLlamaConfig(dir.str()); }, {dir / "config.json", "does not exist"});
  WriteFileAtomic(dir / "config.json", "{\"vocab_size\": ");
  ExpectError([&] { LoadLlamaConfig(dir.str()); }, {dir / "config.json", "not valid JSON"});
}

namespace {

// Llama-3.2-1B's published config.json, as transformers 4.45 wrote it.
nlohmann::json Llama32_1B() {
  return nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})");
}

// The same model's config in the layout transformers 5 writes (rope_parameters, dtype).
nlohmann::json Llama32_1B_v5() {
  nlohmann::json j = Llama32_1B();
  nlohmann::json rp = j["rope_scaling"];
  rp["rope_theta"] = j["rope_theta"];
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j.erase("torch_dtype");
  j["dtype"] = "bfloat16";
  j["rope_parameters"] = rp;
  j["transformers_version"] = "5.24.0";
  return j;
}

// Qwen2.5-7B's published config.json (transformers 4.43).
nlohmann::json Qwen25_7B() {
  return nlohmann::json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
    "intermediate_size": 18944, "max_position_embeddings": 131072, "max_window_layers": 28,
    "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": false,
    "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": true, "use_mrope": false,
    "use_sliding_window": false, "vocab_size": 152064})");
}

// Mistral-7B-v0.3's published config.json.
nlohmann::json Mistral7B_v03() {
  return nlohmann::json::parse(R"({
    "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.42.0.dev0", "use_cache": true, "vocab_size": 32768})");
}

}  // namespace

TEST(HfConfig, Llama3ConfigInBothLayoutsReadsTheSame) {
  for (const auto& [j, name] : {std::pair{Llama32_1B(), "4.x"}, std::pair{Llama32_1B_v5(), "5.x"}}) {
    SCOPED_TRACE(name);
    const LlamaConfig c = LlamaConfigFromJson(j, "llama3.2-1b/config.json");
    EXPECT_EQ(c.model_type, "llama");
    EXPECT_EQ(c.head_dim(), 64);
    EXPECT_EQ(c.rope_theta, 500000.0);
    EXPECT_EQ(c.rope_scaling.type, "llama3");
    EXPECT_EQ(c.rope_scaling.factor, 32.0);
    EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0);
    EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0);
    EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ(c.torch_dtype, "bfloat16");
    EXPECT_FALSE(c.qkv_bias);
    EXPECT_EQ(c.sliding_window, 0);
    // published size of Llama-3.2-1B: 1,235,814,400 parameters (tied head counted once)
    EXPECT_EQ(c.NumParams(), 1235814400LL);
  }
  // a config holding both layouts must agree
  nlohmann::json both = Llama32_1B_v5();
  both["rope_theta"] = 10000.0;
  ExpectError([&] { LlamaConfigFromJson(both, "b.json"); }, {"b.json", "rope_theta 10000", "rope_parameters"});
  both = Llama32_1B_v5();
  both["rope_scaling"] = Llama32_1B()["rope_scaling"];
  EXPECT_EQ(LlamaConfigFromJson(both, "b.json").rope_scaling.factor, 32.0);
  both["rope_scaling"]["factor"] = 8.0;
  ExpectError([&] { LlamaConfigFromJson(both, "b.json"); }, {"b.json", "rope_scaling", "rope_parameters", "differ"});
}

TEST(HfConfig, WrittenLlama3ConfigParsesBack) {
  const LlamaConfig c = LlamaConfigFromJson(Llama32_1B(), "in.json");
  const LlamaConfig r = LlamaConfigFromJson(LlamaConfigToJson(c), "out.json");
  EXPECT_EQ(r.head_dim(), 64);
  EXPECT_EQ(r.rope_scaling.type, "llama3");
  EXPECT_EQ(r.RopeInvFreq(), c.RopeInvFreq());
  const LlamaConfig q = LlamaConfigFromJson(LlamaConfigToJson(LlamaConfigFromJson(Qwen25_7B(), "q")), "q2");
  EXPECT_EQ(q.model_type, "qwen2");
  EXPECT_TRUE(q.qkv_bias);
}

TEST(HfConfig, RopeInverseFrequenciesOfEachType) {
  LlamaConfig c;
  c.hidden_size = 256;
  c.num_attention_heads = 4;  // head_dim 64
  c.rope_theta = 500000.0;
  const auto plain = c.RopeInvFreq();
  ASSERT_EQ(plain.size(), 32u);
  for (size_t j = 0; j < plain.size(); ++j)  // theta^(-2j/hd)
    EXPECT_DOUBLE_EQ(plain[j], std::exp(-std::log(500000.0) * 2.0 * j / 64.0));
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 4.0;
  for (size_t j = 0; j < plain.size(); ++j) EXPECT_DOUBLE_EQ(c.RopeInvFreq()[j], plain[j] / 4.0);
  // llama3 (Llama 3.1 numbers): wavelength 2 pi / f below 8192 / 4 = 2048 kept, above 8192
  // divided by 8, between them (1 - s) f / 8 + s f with s = (8192 / wavelength - 1) / (4 - 1)
  c.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 8192};
  const auto l3 = c.RopeInvFreq();
  int kept = 0, divided = 0, ramp = 0;
  for (size_t j = 0; j < plain.size(); ++j) {
    const double wl = 2 * M_PI / plain[j];
    if (wl < 2048) {
      EXPECT_EQ(l3[j], plain[j]);
      ++kept;
    } else if (wl > 8192) {
      EXPECT_DOUBLE_EQ(l3[j], plain[j] / 8.0);
      ++divided;
    } else {
      const double s = (8192 / wl - 1.0) / 3.0;
      EXPECT_NEAR(l3[j], (1 - s) * plain[j] / 8.0 + s * plain[j], 1e-15);
      ++ramp;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(ramp, 0);
}

TEST(HfConfig, MistralAndQwen2Configs) {
  const LlamaConfig m = LlamaConfigFromJson(Mistral7B_v03(), "mistral/config.json");
  EXPECT_EQ(m.model_type, "mistral");
  EXPECT_EQ(m.rope_theta, 1e6);
  EXPECT_EQ(m.sliding_window, 0);
  EXPECT_FALSE(m.qkv_bias);
  EXPECT_EQ(m.NumParams(), 7248023552LL);  // published Mistral-7B-v0.3 size
  m.CheckSequenceLength(32768, "s");

  nlohmann::json w = Mistral7B_v03();
  w["sliding_window"] = 4096;  // Mistral-7B-v0.1: a window
  const LlamaConfig mw = LlamaConfigFromJson(w, "mistral01.json");
  EXPECT_EQ(mw.sliding_window, 4096);
  mw.CheckSequenceLength(4096, "s");  // equal to full attention up to the window
  ExpectError([&] { mw.CheckSequenceLength(4097, "the samples"); }, {"the samples", "4097", "sliding_window is 4096"});

  const LlamaConfig q = LlamaConfigFromJson(Qwen25_7B(), "qwen/config.json");
  EXPECT_EQ(q.model_type, "qwen2");
  EXPECT_TRUE(q.qkv_bias);
  EXPECT_EQ(q.sliding_window, 0);  // use_sliding_window false: sliding_window is not applied
  EXPECT_EQ(q.NumParams(), 7615616512LL);  // published Qwen2.5-7B size (q/k/v biases included)
  nlohmann::json qs = Qwen25_7B();
  qs["use_sliding_window"] = true;
  qs["sliding_window"] = 4096;
  EXPECT_EQ(LlamaConfigFromJson(qs, "q.json").sliding_window, 4096);
  qs["layer_types"] = std::vector<std::string>(28, "full_attention");  // 5.x: the layer types decide
  EXPECT_EQ(LlamaConfigFromJson(qs, "q.json").sliding_window, 0);
  qs["layer_types"][27] = "sliding_attention";
  EXPECT_EQ(LlamaConfigFromJson(qs, "q.json").sliding_window, 4096);
  qs["layer_types"][27] = "chunked_attention";
  ExpectError([&] { LlamaConfigFromJson(qs, "q.json"); }, {"q.json", "layer_types", "chunked_attention"});
}

TEST(HfConfig, FieldsThatChangeTheMathAreRefusedByName) {
  struct Case {
    const char* what;
    nlohmann::json base;
    const char* field;
    nlohmann::json value;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"unknown model_type", Llama2_7B(), "model_type", "gemma", {"model_type \"gemma\"", "not supported"}},
      {"attention_bias", Llama2_7B(), "attention_bias", true, {"attention_bias", "not supported"}},
      {"mlp_bias", Llama2_7B(), "mlp_bias", true, {"mlp_bias", "not supported"}},
      {"use_mrope", Qwen25_7B(), "use_mrope", true, {"use_mrope", "not supported"}},
      {"attention_dropout", Mistral7B_v03(), "attention_dropout", 0.1, {"attention_dropout 0.1"}},
      {"rope type yarn", Llama2_7B(), "rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}, {"rope_scaling", "\"yarn\""}},
      {"rope type dynamic", Llama2_7B(), "rope_parameters", {{"rope_type", "dynamic"}, {"factor", 2.0}, {"rope_theta", 1e4}},
       {"rope_parameters", "\"dynamic\""}},
      {"rope type longrope", Llama2_7B(), "rope_scaling", {{"type", "longrope"}}, {"\"longrope\""}},
      {"unknown rope key", Llama2_7B(), "rope_scaling", {{"rope_type", "linear"}, {"factor", 2.0}, {"attention_factor", 1.5}},
       {"rope_scaling.attention_factor", "linear"}},
      {"partial rotary in rope_parameters", Llama2_7B(), "rope_parameters",
       {{"rope_type", "default"}, {"rope_theta", 1e4}, {"partial_rotary_factor", 0.5}}, {"partial_rotary_factor"}},
      {"llama3 without factors", Llama2_7B(), "rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}},
       {"llama3", "low_freq_factor"}},
      {"per-layer-type rope", Llama2_7B(), "rope_parameters",
       {{"full_attention", {{"rope_type", "default"}}}, {"sliding_attention", {{"rope_type", "default"}}}},
       {"per-layer-type"}},
      {"unknown field", Llama2_7B(), "partial_rotary_factor", 0.5, {"\"partial_rotary_factor\"", "not known"}},
      {"quantized", Llama2_7B(), "quantization_config", {{"quant_method", "gptq"}}, {"\"quantization_config\"", "not known"}},
      {"sliding_window on llama", Llama2_7B(), "sliding_window", 4096, {"sliding_window", "llama"}},
      {"use_sliding_window on mistral", Mistral7B_v03(), "use_sliding_window", true, {"use_sliding_window", "qwen2"}},
      {"pruned heads", Llama2_7B(), "pruned_heads", {{"0", {1}}}, {"pruned_heads"}},
      {"head_dim odd", Llama2_7B(), "head_dim", 127, {"head_dim 127", "even"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    nlohmann::json j = c.base;
    j[c.field] = c.value;
    auto expect = c.expect;
    expect.push_back("cfg.json");
    ExpectError([&] { LlamaConfigFromJson(j, "cfg.json"); }, expect);
  }
  // the linear type is implemented; an explicit head_dim frees hidden_size from heads * head_dim
  nlohmann::json j = Llama2_7B();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(LlamaConfigFromJson(j, "lin.json").rope_scaling.factor, 2.0);
  j = Llama2_7B();
  j["hidden_size"] = 4100;
  j["head_dim"] = 128;
  EXPECT_EQ(LlamaConfigFromJson(j, "hd.json").head_dim(), 128);
}
