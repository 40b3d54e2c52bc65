#include "metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/check.h"
#include "common/strings.h"

namespace drawbridge::metrics {
namespace {

bool ValidName(const std::string& name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

std::string FormatDouble(double v) {
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  if (std::isnan(v)) {
    return "NaN";
  }
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return common::StrCat(static_cast<int64_t>(v));
  }
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

std::string LabelText(const Labels& labels, const std::string& extra_key = "",
                      const std::string& extra_value = "") {
  if (labels.empty() && extra_key.empty()) {
    return "";
  }
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    common::StrAppend(&out, first ? "" : ",", k, "=\"", EscapeLabelValue(v), "\"");
    first = false;
  }
  if (!extra_key.empty()) {
    common::StrAppend(&out, first ? "" : ",", extra_key, "=\"", extra_value, "\"");
  }
  out += "}";
  return out;
}

}  // namespace

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  DB_CHECK(std::is_sorted(bounds_.begin(), bounds_.end()));
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    buckets_[i].store(0);
  }
}

void Histogram::Observe(double v) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(std::max(0.0, v) * 1e6), std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Get() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  // count is the +Inf bucket, so the exposition stays self-consistent even while
  // observations race the scrape.
  s.count = running;
  s.sum = static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
  return s;
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,     2.5,   5,    10};
}

Registry::Series* Registry::Add(const std::string& name, const std::string& help, Type type,
                                Labels labels) {
  DB_CHECK(ValidName(name));
  for (const auto& [k, v] : labels) {
    DB_CHECK(ValidName(k));
  }
  Family* family = nullptr;
  for (auto& f : families_) {
    if (f->name == name) {
      DB_CHECK(f->type == type);
      family = f.get();
    }
  }
  if (family == nullptr) {
    families_.push_back(std::make_unique<Family>(Family{name, help, type, {}}));
    family = families_.back().get();
  }
  family->series.push_back(std::make_unique<Series>());
  family->series.back()->labels = std::move(labels);
  return family->series.back().get();
}

Counter* Registry::AddCounter(const std::string& name, const std::string& help, Labels labels) {
  absl::MutexLock lock(&mu_);
  Series* s = Add(name, help, Type::kCounter, std::move(labels));
  s->counter = std::make_unique<Counter>();
  return s->counter.get();
}

Gauge* Registry::AddGauge(const std::string& name, const std::string& help, Labels labels) {
  absl::MutexLock lock(&mu_);
  Series* s = Add(name, help, Type::kGauge, std::move(labels));
  s->gauge = std::make_unique<Gauge>();
  return s->gauge.get();
}

Histogram* Registry::AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<double> bounds, Labels labels) {
  absl::MutexLock lock(&mu_);
  Series* s = Add(name, help, Type::kHistogram, std::move(labels));
  s->histogram = std::make_unique<Histogram>(std::move(bounds));
  return s->histogram.get();
}

void Registry::AddGaugeFunction(const std::string& name, const std::string& help, Labels labels,
                                std::function<double()> fn) {
  absl::MutexLock lock(&mu_);
  Series* s = Add(name, help, Type::kGauge, std::move(labels));
  s->fn = std::move(fn);
}

std::string Registry::Render() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& f : families_) {
    const char* type = f->type == Type::kCounter ? "counter"
                       : f->type == Type::kGauge ? "gauge"
                                                 : "histogram";
    common::StrAppend(&out, "# HELP ", f->name, " ", f->help, "\n# TYPE ", f->name, " ", type,
                      "\n");
    for (const auto& s : f->series) {
      if (s->counter) {
        common::StrAppend(&out, f->name, LabelText(s->labels), " ", s->counter->value(), "\n");
      } else if (s->gauge) {
        common::StrAppend(&out, f->name, LabelText(s->labels), " ", s->gauge->value(), "\n");
      } else if (s->fn) {
        common::StrAppend(&out, f->name, LabelText(s->labels), " ", FormatDouble(s->fn()), "\n");
      } else if (s->histogram) {
        Histogram::Snapshot h = s->histogram->Get();
        for (size_t i = 0; i <= h.bounds.size(); ++i) {
          std::string le = i < h.bounds.size() ? FormatDouble(h.bounds[i]) : "+Inf";
          common::StrAppend(&out, f->name, "_bucket", LabelText(s->labels, "le", le), " ",
                            h.cumulative[i], "\n");
        }
        common::StrAppend(&out, f->name, "_sum", LabelText(s->labels), " ", FormatDouble(h.sum),
                          "\n", f->name, "_count", LabelText(s->labels), " ", h.count, "\n");
      }
    }
  }
  return out;
}

}  // namespace drawbridge::metrics
