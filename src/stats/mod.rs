//! Statistics: distribution fits, goodness of fit, statistical cutoffs and UQ metrics.
