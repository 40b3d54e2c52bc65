#include "common/worker_pool.h"

#include <exception>

#include "common/log.h"

namespace drawbridge::common {

WorkerPool::WorkerPool(int threads) {
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { Run(); });
  }
}

WorkerPool::~WorkerPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) {
    t.join();
  }
}

void WorkerPool::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void WorkerPool::Run() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WorkerPool* p)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return p->stopping_ || !p->tasks_.empty(); },
          this));
      if (tasks_.empty()) {
        return;  // stopping and drained
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    // Thread boundary: a task must not take the pool down with it.
    try {
      task();
    } catch (const std::exception& e) {
      LogError("worker.task_exception", {{"error", e.what()}});
    } catch (...) {
      LogError("worker.task_exception", {{"error", "unknown"}});
    }
  }
}

}  // namespace drawbridge::common
