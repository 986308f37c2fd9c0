#include "more/data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <unordered_map>

#include "more/core/error.h"
#include "more/core/hash.h"

namespace more {

Tokenizer::Tokenizer(const std::string& model_path)
    : path_(model_path), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  if (!std::filesystem::is_regular_file(model_path))
    throw Error("tokenizer model '" + model_path + "' does not exist",
                "pass the .model file written by `shard_data tokenizer` (or the model's tokenizer.model)");
  const auto status = sp_->Load(model_path);
  if (!status.ok())
    throw Error("cannot load tokenizer model '" + model_path + "': " + status.ToString(),
                "the file is not a SentencePiece model or is truncated; re-create it");
  hash_ = HashFileHex(model_path);
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::Encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok())
    throw Error("tokenizer '" + path_ + "' failed to encode \"" + text.substr(0, 80) +
                "\": " + status.ToString());
  return {ids.begin(), ids.end()};
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  const int n = sp_->GetPieceSize();
  std::vector<int> v;
  v.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= n)
      Fail("cannot decode id {} with tokenizer '{}': outside its vocabulary [0, {})", id, path_, n);
    v.push_back(id);
  }
  std::string text;
  const auto status = sp_->Decode(v, &text);
  if (!status.ok()) throw Error("tokenizer '" + path_ + "' failed to decode: " + status.ToString());
  return text;
}

int32_t Tokenizer::bos_id() const { return sp_->bos_id(); }
int32_t Tokenizer::eos_id() const { return sp_->eos_id(); }
int32_t Tokenizer::pad_id() const { return sp_->pad_id() >= 0 ? sp_->pad_id() : 0; }
int32_t Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }

namespace {

// Feeds SentencePiece the lines read up front (so file names may contain any character).
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>* lines) : lines_(lines) {}
  bool done() const override { return i_ >= lines_->size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return (*lines_)[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>* lines_;
  size_t i_ = 0;
};

// Distinct UTF-8 code points (counted by their byte sequences).
size_t CountChars(const std::vector<std::string>& lines) {
  std::set<std::string> chars;
  for (const auto& line : lines) {
    for (size_t i = 0; i < line.size();) {
      const auto c = static_cast<unsigned char>(line[i]);
      const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
      chars.insert(line.substr(i, len));
      i += len;
    }
  }
  return chars.size();
}

}  // namespace

void TrainTokenizer(const std::vector<std::string>& text_files, const std::string& model_prefix,
                    int vocab_size) {
  if (text_files.empty()) throw Error("TrainTokenizer: no text files given");
  std::vector<std::string> lines;
  for (const auto& file : text_files) {
    std::ifstream in(file);
    if (!in) throw Error("cannot read tokenizer training text '" + file + "'", "check the path");
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) lines.push_back(line);
  }
  if (lines.empty())
    throw Error("tokenizer training text is empty (files: " + text_files.front() + ", ...)",
                "the manifest's train files have no rows");
  const size_t n_chars = CountChars(lines);
  constexpr int kSpecials = 3;  // unk, bos, eos
  if (vocab_size < static_cast<int>(n_chars) + kSpecials + 1)
    Fail(
        "tokenizer vocab size {} is too small: the corpus has {} distinct characters (+{} special "
        "pieces) (hint: use --vocab-size >= {})",
        vocab_size, n_chars, kSpecials, n_chars + kSpecials + 64);
  // Byte fallback needs 256 byte pieces on top of the characters: only worth it when they take
  // at most a quarter of the vocabulary (a tiny test vocabulary keeps its room for merges, and
  // characters outside the training text then map to unk).
  const bool byte_fallback =
      vocab_size >= 4 * 256 && vocab_size >= static_cast<int>(n_chars) + kSpecials + 256 + 64;

  const std::unordered_map<std::string, std::string> kwargs = {
      {"model_prefix", model_prefix},
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"byte_fallback", byte_fallback ? "true" : "false"},
      {"split_digits", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"character_coverage", "1.0"},
      {"hard_vocab_limit", "false"},
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"num_threads", "1"},
      {"minloglevel", "1"},
  };
  sentencepiece::SetRandomGeneratorSeed(1234);
  LineIterator it(&lines);
  const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, &it);
  if (!status.ok())
    throw Error("SentencePiece training of '" + model_prefix + ".model' failed: " + status.ToString(),
                "check --vocab-size against the corpus size");
}

}  // namespace more
