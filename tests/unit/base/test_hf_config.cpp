// Hugging Face LLaMA config.json parsing, validation and parameter counting.
#include <gtest/gtest.h>
#include <unistd.h>

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
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  ExpectError([&] { LlamaConfigFromJson(j, "rs.json"); }, {"rs.json", "rope_scaling"});
  j = Llama2_7B();
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
