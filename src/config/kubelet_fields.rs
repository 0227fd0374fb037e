//! The fields of KubeletConfiguration (`kubelet.config.k8s.io/v1beta1`) and the JSON type
//! each takes, so that a per-node field is checked before anything is written. The table
//! is read from `staging/src/k8s.io/kubelet/config/v1beta1/types.go` of Kubernetes
//! v1.36.2, with whether v1.20.2's has the field (the oldest kubelet kubejoin supports).

use serde_json::Value;

/// A field's type, as its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    Int,
    Float,
    /// A Go duration string: `10s`, `1m30s`.
    Duration,
    StrList,
    IntList,
    StrMap,
    BoolMap,
    StrListMap,
    /// A structure (authentication, logging, ...): a table.
    Object,
    /// A list of structures (registerWithTaints, reservedMemory, ...).
    ObjectList,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Bool => "true or false",
            Kind::Int => "an integer",
            Kind::Float => "a number",
            Kind::Duration => "a duration such as \"30s\" or \"1m30s\"",
            Kind::StrList => "a list of strings",
            Kind::IntList => "a list of integers",
            Kind::StrMap => "a table of strings",
            Kind::BoolMap => "a table of true or false",
            Kind::StrListMap => "a table of lists of strings",
            Kind::Object => "a table",
            Kind::ObjectList => "a list of tables",
        }
    }
}

use Kind::*;

/// Every field, sorted by name: (name, kind, in kubelet v1.20).
pub const FIELDS: &[(&str, Kind, bool)] = &[
    ("address", Str, true),
    ("allowedUnsafeSysctls", StrList, true),
    ("authentication", Object, true),
    ("authorization", Object, true),
    ("cgroupDriver", Str, true),
    ("cgroupRoot", Str, true),
    ("cgroupsPerQOS", Bool, true),
    ("clusterDNS", StrList, true),
    ("clusterDomain", Str, true),
    ("configMapAndSecretChangeDetectionStrategy", Str, true),
    ("containerLogMaxFiles", Int, true),
    ("containerLogMaxSize", Str, true),
    ("containerLogMaxWorkers", Int, false),
    ("containerLogMonitorInterval", Duration, false),
    ("containerRuntimeEndpoint", Str, false),
    ("contentType", Str, true),
    ("cpuCFSQuota", Bool, true),
    ("cpuCFSQuotaPeriod", Duration, true),
    ("cpuManagerPolicy", Str, true),
    ("cpuManagerPolicyOptions", StrMap, false),
    ("cpuManagerReconcilePeriod", Duration, true),
    ("crashLoopBackOff", Object, false),
    ("enableContentionProfiling", Bool, true),
    ("enableControllerAttachDetach", Bool, true),
    ("enableDebugFlagsHandler", Bool, false),
    ("enableDebuggingHandlers", Bool, true),
    ("enableProfilingHandler", Bool, false),
    ("enableServer", Bool, true),
    ("enableSystemLogHandler", Bool, true),
    ("enableSystemLogQuery", Bool, false),
    ("enforceNodeAllocatable", StrList, true),
    ("eventBurst", Int, true),
    ("eventRecordQPS", Int, true),
    ("evictionHard", StrMap, true),
    ("evictionMaxPodGracePeriod", Int, true),
    ("evictionMinimumReclaim", StrMap, true),
    ("evictionPressureTransitionPeriod", Duration, true),
    ("evictionSoft", StrMap, true),
    ("evictionSoftGracePeriod", StrMap, true),
    ("failCgroupV1", Bool, false),
    ("failSwapOn", Bool, true),
    ("featureGates", BoolMap, true),
    ("fileCheckFrequency", Duration, true),
    ("hairpinMode", Str, true),
    ("healthzBindAddress", Str, true),
    ("healthzPort", Int, true),
    ("httpCheckFrequency", Duration, true),
    ("imageGCHighThresholdPercent", Int, true),
    ("imageGCLowThresholdPercent", Int, true),
    ("imageMaximumGCAge", Duration, false),
    ("imageMinimumGCAge", Duration, true),
    ("imagePullCredentialsVerificationPolicy", Str, false),
    ("imageServiceEndpoint", Str, false),
    ("iptablesDropBit", Int, true),
    ("iptablesMasqueradeBit", Int, true),
    ("kernelMemcgNotification", Bool, true),
    ("kubeAPIBurst", Int, true),
    ("kubeAPIQPS", Int, true),
    ("kubeReserved", StrMap, true),
    ("kubeReservedCgroup", Str, true),
    ("kubeletCgroups", Str, true),
    ("localStorageCapacityIsolation", Bool, false),
    ("logging", Object, true),
    ("makeIPTablesUtilChains", Bool, true),
    ("maxOpenFiles", Int, true),
    ("maxParallelImagePulls", Int, false),
    ("maxPods", Int, true),
    ("memoryManagerPolicy", Str, false),
    ("memoryReservationPolicy", Str, false),
    ("memorySwap", Object, false),
    ("memoryThrottlingFactor", Float, false),
    ("mergeDefaultEvictionSettings", Bool, false),
    ("nodeLeaseDurationSeconds", Int, true),
    ("nodeStatusMaxImages", Int, true),
    ("nodeStatusReportFrequency", Duration, true),
    ("nodeStatusUpdateFrequency", Duration, true),
    ("oomScoreAdj", Int, true),
    ("podCIDR", Str, true),
    ("podLogsDir", Str, false),
    ("podPidsLimit", Int, true),
    ("podsPerCore", Int, true),
    ("port", Int, true),
    ("preloadedImagesVerificationAllowlist", StrList, false),
    ("protectKernelDefaults", Bool, true),
    ("providerID", Str, true),
    ("qosReserved", StrMap, true),
    ("readOnlyPort", Int, true),
    ("registerNode", Bool, false),
    ("registerWithTaints", ObjectList, false),
    ("registryBurst", Int, true),
    ("registryPullQPS", Int, true),
    ("reservedMemory", ObjectList, false),
    ("reservedSystemCPUs", Str, true),
    ("resolvConf", Str, true),
    ("rotateCertificates", Bool, true),
    ("runOnce", Bool, true),
    ("runtimeRequestTimeout", Duration, true),
    ("seccompDefault", Bool, false),
    ("serializeImagePulls", Bool, true),
    ("serverTLSBootstrap", Bool, true),
    ("showHiddenMetricsForVersion", Str, true),
    ("shutdownGracePeriod", Duration, true),
    ("shutdownGracePeriodByPodPriority", ObjectList, false),
    ("shutdownGracePeriodCriticalPods", Duration, true),
    ("singleProcessOOMKill", Bool, false),
    ("staticPodPath", Str, true),
    ("staticPodURL", Str, true),
    ("staticPodURLHeader", StrListMap, true),
    ("streamingConnectionIdleTimeout", Duration, true),
    ("syncFrequency", Duration, true),
    ("systemCgroups", Str, true),
    ("systemReserved", StrMap, true),
    ("systemReservedCgroup", Str, true),
    ("tlsCertFile", Str, true),
    ("tlsCipherSuites", StrList, true),
    ("tlsCurvePreferences", IntList, false),
    ("tlsMinVersion", Str, true),
    ("tlsPrivateKeyFile", Str, true),
    ("topologyManagerPolicy", Str, true),
    ("topologyManagerPolicyOptions", StrMap, false),
    ("topologyManagerScope", Str, true),
    ("tracing", Object, false),
    ("userNamespaces", Object, false),
    ("volumePluginDir", Str, true),
    ("volumeStatsAggPeriod", Duration, true),
];

/// The field named `name`.
pub fn field(name: &str) -> Option<(Kind, bool)> {
    FIELDS
        .binary_search_by(|(n, _, _)| (*n).cmp(name))
        .ok()
        .map(|i| (FIELDS[i].1, FIELDS[i].2))
}

/// The field a mistyped name most likely means: the same letters in another case or
/// with `_`/`-` (`max_pods`, `MaxPods`), else none.
pub fn suggest(name: &str) -> Option<&'static str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let want = squash(name);
    FIELDS
        .iter()
        .find(|(n, _, _)| squash(n) == want)
        .map(|(n, _, _)| *n)
}

/// Whether `value` is what a field of `kind` takes; the expected type when not.
pub fn check(kind: Kind, value: &Value) -> Result<(), String> {
    let all = |v: &Value, f: fn(&Value) -> bool| match v {
        Value::Array(a) => a.iter().all(f),
        _ => false,
    };
    let map_all = |v: &Value, f: &dyn Fn(&Value) -> bool| match v {
        Value::Object(m) => m.values().all(f),
        _ => false,
    };
    let ok = match kind {
        Str => value.is_string(),
        Bool => value.is_boolean(),
        Int => value.is_i64() || value.is_u64(),
        Float => value.is_number(),
        Duration => value.as_str().is_some_and(is_go_duration),
        StrList => all(value, Value::is_string),
        IntList => all(value, |v| v.is_i64()),
        StrMap => map_all(value, &Value::is_string),
        BoolMap => map_all(value, &Value::is_boolean),
        StrListMap => map_all(value, &|v| all(v, Value::is_string)),
        Object => value.is_object(),
        ObjectList => all(value, Value::is_object),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("must be {}", kind.describe()))
    }
}

/// A Go `time.ParseDuration` string: numbers each with a unit (ns, us, µs, ms, s, m, h),
/// optionally signed; `0` alone.
pub fn is_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_is_sorted_and_complete() {
        assert!(FIELDS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(FIELDS.len(), 125);
        assert_eq!(field("maxPods"), Some((Int, true)));
        assert_eq!(field("containerRuntimeEndpoint"), Some((Str, false)));
        assert_eq!(field("max_pods"), None);
    }

    #[test]
    fn names_are_suggested() {
        assert_eq!(suggest("max_pods"), Some("maxPods"));
        assert_eq!(suggest("ClusterDNS"), Some("clusterDNS"));
        assert_eq!(suggest("eviction-hard"), Some("evictionHard"));
        assert_eq!(suggest("nothing"), None);
    }

    #[test]
    fn types_are_checked() {
        assert!(check(Int, &json!(110)).is_ok());
        assert!(check(Int, &json!("110")).is_err());
        assert!(check(Duration, &json!("1m30s")).is_ok());
        assert!(check(Duration, &json!("90")).is_err());
        assert!(check(StrMap, &json!({"memory.available": "100Mi"})).is_ok());
        assert!(check(StrMap, &json!({"memory.available": 100})).is_err());
        assert!(check(BoolMap, &json!({"A": true})).is_ok());
        assert!(check(StrList, &json!(["a", 1])).is_err());
        assert!(check(ObjectList, &json!([{"key": "a"}])).is_ok());
        assert_eq!(
            check(Bool, &json!("yes")).unwrap_err(),
            "must be true or false"
        );
    }

    #[test]
    fn go_durations() {
        for ok in ["0", "0s", "10s", "1m30s", "1.5h", "300ms", "-1s", "2h45m"] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "s", "10", "1x", "1..2s", "m"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }
}
