// Task metrics used by the evaluator (torch-free).
//   accuracy = mean(pred == gold)
//   mcc      = Matthews correlation; for K > 2 classes the multi-class generalisation
//              (Gorodkin's R_K) from the confusion matrix C:
//              (c*s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)),
//              c = trace, s = samples, p_k predicted counts, t_k true counts; 0 when undefined
//   f1       = binary F1 of class `positive`: 2 tp / (2 tp + fp + fn); 0 when tp + fp + fn = 0
//   pearson  = Pearson correlation of predicted and gold values; 0 when a side is constant
//   spearman = Pearson correlation of the ranks (ties get their mean rank); 0 when constant
#pragma once
#include <string>
#include <vector>

namespace more {

double Accuracy(const std::vector<int>& pred, const std::vector<int>& gold);
double MatthewsCorrelation(const std::vector<int>& pred, const std::vector<int>& gold, int num_classes);
double F1Binary(const std::vector<int>& pred, const std::vector<int>& gold, int positive = 1);
double PearsonCorrelation(const std::vector<double>& x, const std::vector<double>& y);
double SpearmanCorrelation(const std::vector<double>& x, const std::vector<double>& y);
// 1-based ranks of x, ties sharing their mean rank.
std::vector<double> MeanRanks(const std::vector<double>& x);

}  // namespace more
