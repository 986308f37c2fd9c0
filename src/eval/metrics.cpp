#include "more/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "more/core/error.h"

namespace more {

double Accuracy(const std::vector<int>& pred, const std::vector<int>& gold) {
  MORE_CHECK(pred.size() == gold.size(), "accuracy: {} predictions for {} labels", pred.size(), gold.size());
  if (pred.empty()) return 0.0;
  size_t ok = 0;
  for (size_t i = 0; i < pred.size(); ++i) ok += pred[i] == gold[i];
  return static_cast<double>(ok) / static_cast<double>(pred.size());
}

double MatthewsCorrelation(const std::vector<int>& pred, const std::vector<int>& gold, int k) {
  MORE_CHECK(pred.size() == gold.size(), "mcc: {} predictions for {} labels", pred.size(), gold.size());
  std::vector<double> p(k, 0.0), t(k, 0.0);
  double c = 0, s = static_cast<double>(pred.size());
  for (size_t i = 0; i < pred.size(); ++i) {
    MORE_CHECK(pred[i] >= 0 && pred[i] < k && gold[i] >= 0 && gold[i] < k, "mcc: class out of range");
    p[pred[i]] += 1;
    t[gold[i]] += 1;
    c += pred[i] == gold[i];
  }
  double pt = 0, pp = 0, tt = 0;
  for (int j = 0; j < k; ++j) {
    pt += p[j] * t[j];
    pp += p[j] * p[j];
    tt += t[j] * t[j];
  }
  const double den = std::sqrt((s * s - pp) * (s * s - tt));
  return den == 0 ? 0.0 : (c * s - pt) / den;
}

double PearsonCorrelation(const std::vector<double>& x, const std::vector<double>& y) {
  MORE_CHECK(x.size() == y.size(), "pearson: {} predictions for {} labels", x.size(), y.size());
  const double n = static_cast<double>(x.size());
  if (n < 2) return 0.0;
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) { mx += x[i]; my += y[i]; }
  mx /= n;
  my /= n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return (sxx == 0 || syy == 0) ? 0.0 : sxy / std::sqrt(sxx * syy);
}

double F1Binary(const std::vector<int>& pred, const std::vector<int>& gold, int positive) {
  MORE_CHECK(pred.size() == gold.size(), "f1: {} predictions for {} labels", pred.size(), gold.size());
  double tp = 0, fp = 0, fn = 0;
  for (size_t i = 0; i < pred.size(); ++i) {
    const bool p = pred[i] == positive, g = gold[i] == positive;
    tp += p && g;
    fp += p && !g;
    fn += !p && g;
  }
  return tp + fp + fn == 0 ? 0.0 : 2 * tp / (2 * tp + fp + fn);
}

std::vector<double> MeanRanks(const std::vector<double>& x) {
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> rank(x.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && x[order[j + 1]] == x[order[i]]) ++j;
    const double mean = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;  // ranks i+1..j+1
    for (size_t k = i; k <= j; ++k) rank[order[k]] = mean;
    i = j + 1;
  }
  return rank;
}

double SpearmanCorrelation(const std::vector<double>& x, const std::vector<double>& y) {
  MORE_CHECK(x.size() == y.size(), "spearman: {} predictions for {} labels", x.size(), y.size());
  return PearsonCorrelation(MeanRanks(x), MeanRanks(y));
}

}  // namespace more
