"""msewatch: continuous error monitoring of deployed regression models on Apache Beam."""

__version__ = "0.1.0"
