//! Run-time instruction-set selection.
//!
//! The active [`Isa`] is chosen once per process ([`Isa::detect`], honouring `FREEHOLD_ISA`),
//! can be set explicitly with [`Isa::set_global`], and can be overridden for the current thread
//! with [`with_isa`] (tests and benchmarks use that to compare paths side by side in parallel).
//!
//! **Architecture Invariant:** a kernel reads [`Isa::current`] once, on the calling thread, and
//! passes the value down explicitly (also into thread-pool jobs). Dispatch re-checks CPU support
//! before entering a `#[target_feature]` function, so no value of `Isa` can cause undefined
//! behaviour, whatever its origin.

use crate::KernelError;
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level the kernels have a code path for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust; the reference every fast path is tested against.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (Haswell / Zen 1 and later).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL (+ FMA, F16C), e.g. Zen 4, Ice Lake, Sapphire Rapids.
    Avx512,
}

const NONE: u8 = 0;

fn encode(isa: Isa) -> u8 {
    match isa {
        Isa::Scalar => 1,
        Isa::Avx2 => 2,
        Isa::Avx512 => 3,
    }
}

fn decode(v: u8) -> Option<Isa> {
    match v {
        1 => Some(Isa::Scalar),
        2 => Some(Isa::Avx2),
        3 => Some(Isa::Avx512),
        _ => None,
    }
}

/// The process-wide choice; `NONE` until first use.
static GLOBAL: AtomicU8 = AtomicU8::new(NONE);

thread_local! {
    /// Per-thread override installed by [`with_isa`].
    static OVERRIDE: Cell<Option<Isa>> = const { Cell::new(None) };
}

impl Isa {
    /// Every level, best first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Scalar];

    /// The lower-case name used by `FREEHOLD_ISA` (`scalar`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the level (cheap: the feature bits are cached by std).
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best level this CPU supports, ignoring `FREEHOLD_ISA`.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.is_supported())
            .unwrap_or(Isa::Scalar)
    }

    /// Every level this CPU supports, best first (always ends with `Scalar`).
    pub fn supported() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_supported()).collect()
    }

    /// The level to use: `FREEHOLD_ISA` if set (an error if it names an unknown or
    /// unsupported level), otherwise [`Isa::best`].
    pub fn detect() -> Result<Isa, KernelError> {
        Isa::detect_from(std::env::var("FREEHOLD_ISA").ok().as_deref())
    }

    /// [`Isa::detect`] with the variable's value passed in (`None` when unset).
    pub(crate) fn detect_from(var: Option<&str>) -> Result<Isa, KernelError> {
        match var {
            Some(s) if !s.trim().is_empty() => {
                let isa: Isa = s.parse()?;
                isa.check_supported()?;
                Ok(isa)
            }
            _ => Ok(Isa::best()),
        }
    }

    /// `Ok(self)` if supported, otherwise [`KernelError::UnsupportedIsa`].
    pub fn check_supported(self) -> Result<Isa, KernelError> {
        if self.is_supported() {
            Ok(self)
        } else {
            Err(KernelError::UnsupportedIsa {
                requested: self,
                best: Isa::best(),
            })
        }
    }

    /// The process-wide level. On first use it runs [`Isa::detect`]; if `FREEHOLD_ISA` is
    /// invalid it prints why to stderr and uses [`Isa::best`] (never silently).
    pub fn global() -> Isa {
        if let Some(isa) = decode(GLOBAL.load(Ordering::Relaxed)) {
            return isa;
        }
        let isa = match Isa::detect() {
            Ok(isa) => isa,
            Err(e) => {
                let best = Isa::best();
                eprintln!("freehold kernels: FREEHOLD_ISA ignored: {e}; using {best}");
                best
            }
        };
        // Racing first users agree up to the message; keep whichever landed first.
        let _ = GLOBAL.compare_exchange(NONE, encode(isa), Ordering::Relaxed, Ordering::Relaxed);
        decode(GLOBAL.load(Ordering::Relaxed)).unwrap_or(isa)
    }

    /// Sets the process-wide level (e.g. from a command-line flag). Errors if unsupported.
    pub fn set_global(isa: Isa) -> Result<(), KernelError> {
        isa.check_supported()?;
        GLOBAL.store(encode(isa), Ordering::Relaxed);
        Ok(())
    }

    /// The level kernels called on this thread use: the [`with_isa`] override if one is
    /// active, else [`Isa::global`].
    pub fn current() -> Isa {
        OVERRIDE.with(Cell::get).unwrap_or_else(Isa::global)
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Isa {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Isa, KernelError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(Isa::Scalar),
            "avx2" => Ok(Isa::Avx2),
            "avx512" | "avx-512" => Ok(Isa::Avx512),
            _ => Err(KernelError::UnknownIsa(s.to_string())),
        }
    }
}

/// Runs `f` with every kernel called on this thread using `isa` (pool workers follow, because
/// kernels pass the level into their jobs). Errors, without running `f`, if `isa` is
/// unsupported. Nested overrides restore the outer one on return (also on panic).
pub fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> Result<R, KernelError> {
    isa.check_supported()?;
    struct Restore(Option<Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OVERRIDE.with(|o| o.replace(Some(isa))));
    Ok(f())
}

/// Support bits cached for dispatch: bit 0 = AVX2 level, bit 1 = AVX-512 level, bit 7 = known.
static SUPPORT: AtomicU8 = AtomicU8::new(0);

/// Whether `isa` may be entered; used by `dispatch!` right before each `#[target_feature]` call.
#[inline]
pub(crate) fn runnable(isa: Isa) -> bool {
    let mut bits = SUPPORT.load(Ordering::Relaxed);
    if bits == 0 {
        bits = 0x80 | (Isa::Avx2.is_supported() as u8) | ((Isa::Avx512.is_supported() as u8) << 1);
        SUPPORT.store(bits, Ordering::Relaxed);
    }
    match isa {
        Isa::Scalar => true,
        Isa::Avx2 => bits & 1 != 0,
        Isa::Avx512 => bits & 2 != 0,
    }
}

/// Calls the per-ISA instantiation of a kernel.
///
/// `dispatch!(isa, module, scalar_expr, (args...))` calls `module::avx512(args)` or
/// `module::avx2(args)` (both `#[target_feature]` functions made by `simd_fns!`) when `isa`
/// selects them and the CPU supports them, and evaluates `scalar_expr` otherwise.
macro_rules! dispatch {
    ($isa:expr, $m:ident, $scalar:expr, ($($arg:expr),* $(,)?)) => {{
        #[allow(unreachable_patterns)]
        match $isa {
            #[cfg(target_arch = "x86_64")]
            $crate::Isa::Avx512 if $crate::isa::runnable($crate::Isa::Avx512) => {
                // SAFETY: `runnable` just confirmed the CPU has every feature `avx512` enables.
                unsafe { $m::avx512($($arg),*) }
            }
            #[cfg(target_arch = "x86_64")]
            $crate::Isa::Avx2 if $crate::isa::runnable($crate::Isa::Avx2) => {
                // SAFETY: `runnable` just confirmed the CPU has every feature `avx2` enables.
                unsafe { $m::avx2($($arg),*) }
            }
            _ => $scalar,
        }
    }};
}
pub(crate) use dispatch;

/// Stamps out `mod $m { unsafe fn avx512(..); unsafe fn avx2(..) }`, each a
/// `#[target_feature]` function that calls the `#[inline(always)]` generic `$g::<S>` so the
/// whole body is compiled for that ISA.
macro_rules! simd_fns {
    ($m:ident, $g:ident, ($($a:ident : $t:ty),* $(,)?) $(-> $ret:ty)?) => {
        #[cfg(target_arch = "x86_64")]
        mod $m {
            #[allow(unused_imports)]
            use super::*;
            /// # Safety
            /// The CPU must support AVX-512 F/BW/VL, AVX2, FMA and F16C.
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
            pub(crate) unsafe fn avx512($($a: $t),*) $(-> $ret)? {
                super::$g::<$crate::simd::Avx512>($($a),*)
            }
            /// # Safety
            /// The CPU must support AVX2, FMA and F16C.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(crate) unsafe fn avx2($($a: $t),*) $(-> $ret)? {
                super::$g::<$crate::simd::Avx2>($($a),*)
            }
        }
    };
}
pub(crate) use simd_fns;
