//! Heterogeneity and model accuracy (Shuang et al.): see below.
