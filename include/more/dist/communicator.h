// Communicator: the collective and point-to-point operations the trainer needs, over one
// group of ranks. Backends: MPI (CPU tensors; what CI runs) and NCCL (CUDA tensors; built
// when a CUDA LibTorch is found). All tensor arguments must be contiguous; operations are in
// place where the name says so. A size-1 communicator makes every operation a no-op copy, so
// single-rank code paths pay nothing.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

namespace at { class Tensor; }

namespace more {

// A send in flight; Wait() blocks until its buffer may be reused (the destructor waits too).
class PendingSend {
 public:
  virtual ~PendingSend() = default;
  virtual void Wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  virtual void AllReduceSum(at::Tensor& t) const = 0;           // in place, all ranks get the sum
  virtual void AllReduceMax(at::Tensor& t) const = 0;           // in place
  virtual void Broadcast(at::Tensor& t, int root) const = 0;    // in place
  // out: [size * in.size(0), ...] = cat over ranks of `in` (rank order)
  virtual void AllGather(const at::Tensor& in, at::Tensor& out) const = 0;
  virtual void Send(const at::Tensor& t, int dst, int tag) const = 0;
  // Non-blocking send of a snapshot of t (pipeline activations: a stage never blocks on a send,
  // so 1F1B's crossing sends cannot deadlock).
  virtual std::unique_ptr<PendingSend> ISend(const at::Tensor& t, int dst, int tag) const = 0;
  virtual void Recv(at::Tensor& t, int src, int tag) const = 0;
  virtual void Barrier() const = 0;
};

class Watchdog;

// MPI backend over an MPI_Comm (not owned unless `owned`). CPU tensors of float32, float64,
// int32, int64, uint8; bf16/f16 are reduced through a float32 copy. With a watchdog (not
// owned; it outlives the communicator) whose timeout is > 0, every operation is issued
// non-blocking and waited for with that timeout (dist/watchdog.h); `name` ("tp", "pp", ...)
// names the group in its messages.
class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, bool owned, const Watchdog* watchdog = nullptr, std::string name = "world");
  ~MpiCommunicator() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  void AllReduceSum(at::Tensor& t) const override;
  void AllReduceMax(at::Tensor& t) const override;
  void Broadcast(at::Tensor& t, int root) const override;
  void AllGather(const at::Tensor& in, at::Tensor& out) const override;
  void Send(const at::Tensor& t, int dst, int tag) const override;
  std::unique_ptr<PendingSend> ISend(const at::Tensor& t, int dst, int tag) const override;
  void Recv(at::Tensor& t, int src, int tag) const override;
  void Barrier() const override;
  MPI_Comm comm() const { return comm_; }

 private:
  // Waits for a request through the watchdog (plain MPI_Wait without one).
  void Wait(MPI_Request* req, MPI_Status* status, const char* op, int peer) const;
  bool Watched() const;

  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
  const Watchdog* watchdog_ = nullptr;
  std::string name_;
  std::vector<int> members_;  // world rank of each rank of this group
};

}  // namespace more
