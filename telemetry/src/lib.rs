//! How the shop reports on itself, shared by the HTTP roles (`ordershop-services`) and the
//! projection workers (`ordershop-projections`) without either depending on the other:
//! - [`Metrics`]: the process's one Prometheus registry;
//! - [`error_chain`]: an error with all its sources, for a log line.

pub mod metrics;

pub use metrics::Metrics;

/// An error and all its sources, outermost first: `a: b: c`. A source whose text the chain
/// already ends with (a wrapper that repeats its cause) is not written twice.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !chain.ends_with(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = cause.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn the_chain_names_every_cause_once() {
        let err = Layer(
            "command failed",
            Some(Box::new(Layer(
                "connection refused",
                Some(Box::new(Layer("connection refused", None))),
            ))),
        );
        assert_eq!(error_chain(&err), "command failed: connection refused");
    }
}
