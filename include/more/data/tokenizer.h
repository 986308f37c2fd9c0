// Tokenizer: a thin wrapper over a SentencePiece model, with LLaMA's id conventions
// (unk = 0, bos = 1, eos = 2, no pad piece: pad falls back to 0). The model file's content hash
// (more::HashFileHex) is written into every shard so a run can check that its shards were made
// with the tokenizer it is given.
//
// TrainTokenizer trains such a model (BPE, byte fallback when the 256 byte pieces take at most a
// quarter of the vocabulary (vocab >= 1024), split digits, identity normalisation) deterministically: one
// thread, no sentence sampling, no shuffling, fixed seed. It writes <prefix>.model and <prefix>.vocab.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace more {

class Tokenizer {
 public:
  // Loads a SentencePiece .model file; throws more::Error naming the file if it is missing or
  // not a valid model.
  explicit Tokenizer(const std::string& model_path);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text -> piece ids, no BOS/EOS. (SentencePiece prepends the "▁" word-boundary marker.)
  std::vector<int32_t> Encode(const std::string& text) const;
  // Piece ids -> text (BOS/EOS/pad are dropped by SentencePiece as control pieces).
  std::string Decode(const std::vector<int32_t>& ids) const;

  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;  // the model's pad id if it defines one, else 0 (unk)
  int32_t vocab_size() const;
  const std::string& hash() const { return hash_; }  // HashFileHex of the .model file
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string hash_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

// Trains a BPE model on the lines of `text_files` (one sentence per line); writes
// <model_prefix>.model and <model_prefix>.vocab. Throws more::Error on a missing/empty input or
// a SentencePiece failure (its message included).
void TrainTokenizer(const std::vector<std::string>& text_files, const std::string& model_prefix,
                    int vocab_size);

}  // namespace more
