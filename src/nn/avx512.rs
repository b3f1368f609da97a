//! A packed single-precision GEMM with an AVX-512 micro-kernel, used for f32 when the CPU has
//! AVX-512F. The `gemm` crate dfdx pins (0.15) only enables its AVX-512 kernels on nightly Rust,
//! so on stable it runs AVX2 code, half the width the CPU can do; AVX-512 intrinsics are stable
//! since Rust 1.89.
//!
//! Classic blocking: `B` is packed into `KC × NR` panels and `A` into `MC × KC` blocks of `MR`-row
//! panels; the micro-kernel keeps an `MR × NR` tile of `C` in 16 zmm registers.

use std::arch::x86_64::*;

/// Rows of the register tile.
const MR: usize = 8;
// `transpose8x8` packs whole `A` panels.
const _: () = assert!(MR == 8);
/// Columns of the register tile (two zmm vectors).
const NR: usize = 32;
/// Depth of a packed block.
const KC: usize = 256;
/// Rows of a packed `A` block (fits L2 with the `B` panel in L1).
const MC: usize = 128;
/// Columns of a packed `B` block.
const NC: usize = 1024;

/// Whether this CPU can run [`sgemm`].
#[inline]
pub(crate) fn available() -> bool {
    // Asked once: the standard library's check (an atomic load and bit tests) showed up at 2%
    // of a convolution, called for every copied row.
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| std::is_x86_feature_detected!("avx512f"))
}

/// Copies `len <= 16` floats from `src` to `dst` with one masked load and store.
///
/// # Safety
/// [`available`] must be true; `src` and `dst` must cover `len` elements.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn copy_masked(dst: *mut f32, src: *const f32, len: usize) {
    let mask: __mmask16 = ((1u32 << len) - 1) as __mmask16;
    _mm512_mask_storeu_ps(dst, mask, _mm512_maskz_loadu_ps(mask, src));
}

/// A strided read-only matrix.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

/// `c[m×n] (+)= a[m×k] · b[k×n]`, `c` row-major with row stride `ldc`.
///
/// # Safety
/// [`available`] must be true; the views must cover their `m×k` / `k×n` elements and `c` must
/// cover `(m-1)*ldc + n` elements.
pub(crate) unsafe fn sgemm(
    (m, k, n): (usize, usize, usize),
    a: View,
    b: View,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    if !accumulate {
        clear_rows(c, (m, n), ldc);
    }
    if k == 0 {
        return;
    }
    PACKED.with_borrow_mut(|(packed_a, packed_b)| {
        // Packing writes every element it later reads (zero padding included), so the buffers
        // are reused across calls without clearing.
        grow(packed_b, KC * NC.min(n.div_ceil(NR) * NR));
        grow(packed_a, MC.min(m.div_ceil(MR) * MR) * KC);
        blocked((m, k, n), a, b, c, ldc, packed_a, packed_b);
    });
}

/// Zeroes the first `n` values of `m` rows of `c`, `ldc` apart.
///
/// # Safety
/// `c` must cover `(m-1)*ldc + n` elements.
unsafe fn clear_rows(c: *mut f32, (m, n): (usize, usize), ldc: usize) {
    for i in 0..m {
        std::ptr::write_bytes(c.add(i * ldc), 0, n);
    }
}

thread_local! {
    /// Each thread's packing buffers for `A` and `B`, kept between calls: allocating and
    /// zeroing ~1 MB per product cost more than small products themselves.
    static PACKED: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Makes `v` at least `len` long.
fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

/// The blocked loops of [`sgemm`] with its packing buffers.
///
/// # Safety
/// As [`sgemm`], with `k > 0` and buffers at least as large as [`sgemm`] makes them.
unsafe fn blocked(
    (m, k, n): (usize, usize, usize),
    a: View,
    b: View,
    c: *mut f32,
    ldc: usize,
    packed_a: &mut [f32],
    packed_b: &mut [f32],
) {
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(b, (pc, jc), (kc, nc), packed_b);
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                pack_a(a, (ic, pc), (mc, kc), packed_a);
                for jr in (0..nc).step_by(NR) {
                    let nr = NR.min(nc - jr);
                    // A full panel of a row-major `B` is read where it lies (see `pack_b`).
                    let (bp, ldb) = if reads_b_in_place(b, nr) {
                        (b.ptr.add(pc * b.rs + jc + jr), b.rs)
                    } else {
                        (packed_b.as_ptr().add(jr * kc), NR)
                    };
                    for ir in (0..mc).step_by(MR) {
                        let mr = MR.min(mc - ir);
                        let ap = packed_a.as_ptr().add(ir * kc);
                        let cp = c.add((ic + ir) * ldc + jc + jr);
                        if nr <= 16 {
                            kernel_half(kc, ap, (bp, ldb), cp, ldc, mr, nr);
                        } else {
                            kernel(kc, ap, (bp, ldb), cp, ldc, mr, nr);
                        }
                    }
                }
            }
        }
    }
}

/// `c[m×n] (+)= a[m×k] · b[k×n]` for small products, without packing `a` (its values are
/// broadcast from where they lie) and with `b` read in place when it is row-major (else copied
/// row-major once). Every element gets the same operations in the same order as in [`sgemm`]
/// (per depth block of `KC`, fused multiply-adds from zero, then one add into `c`), so the two
/// give the same bits and the choice between them is only a matter of speed.
///
/// # Safety
/// As [`sgemm`].
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn sgemm_small(
    (m, k, n): (usize, usize, usize),
    a: View,
    b: View,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    if !accumulate {
        clear_rows(c, (m, n), ldc);
    }
    if k == 0 {
        return;
    }
    ROW_MAJOR_B.with_borrow_mut(|copy| {
        let (bp, ldb) = if b.cs == 1 {
            (b.ptr, b.rs)
        } else {
            grow(copy, k * n);
            row_major_copy(b, (k, n), copy);
            (copy.as_ptr(), n)
        };
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            for j0 in (0..n).step_by(NR) {
                let nr = NR.min(n - j0);
                let masks = (lane_mask(nr), lane_mask(nr.saturating_sub(16)));
                let bt = bp.add(pc * ldb + j0);
                for i0 in (0..m).step_by(MR) {
                    let at = a.ptr.add(i0 * a.rs + pc * a.cs);
                    let tile = (at, a.rs, a.cs, kc, bt, ldb, c.add(i0 * ldc + j0), ldc, masks);
                    match MR.min(m - i0) {
                        8 => small_tile::<8>(tile),
                        7 => small_tile::<7>(tile),
                        6 => small_tile::<6>(tile),
                        5 => small_tile::<5>(tile),
                        4 => small_tile::<4>(tile),
                        3 => small_tile::<3>(tile),
                        2 => small_tile::<2>(tile),
                        _ => small_tile::<1>(tile),
                    }
                }
            }
        }
    });
}

/// Copies `b` (`k × n`, any strides) into `out` row-major; a column-major `b` (`W^T` of a
/// layer's forward pass) goes 8 × 8 blocks at a time through [`transpose8x8`].
#[target_feature(enable = "avx512f")]
unsafe fn row_major_copy(b: View, (k, n): (usize, usize), out: &mut [f32]) {
    let (full_p, full_j) = if b.rs == 1 { (k / 8 * 8, n / 8 * 8) } else { (0, 0) };
    for j0 in (0..full_j).step_by(8) {
        for p0 in (0..full_p).step_by(8) {
            transpose8x8(b.ptr.add(p0 + j0 * b.cs), b.cs, out.as_mut_ptr().add(p0 * n + j0), n);
        }
    }
    for p in 0..k {
        let j_from = if p < full_p { full_j } else { 0 };
        for j in j_from..n {
            *out.get_unchecked_mut(p * n + j) = *b.ptr.add(p * b.rs + j * b.cs);
        }
    }
}

thread_local! {
    /// [`sgemm_small`]'s row-major copy of a `b` given transposed, kept between calls.
    static ROW_MAJOR_B: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The first `lanes` (at most 16) lanes of a zmm vector.
fn lane_mask(lanes: usize) -> __mmask16 {
    ((1u32 << lanes.min(16)) - 1) as __mmask16
}

/// One tile of [`sgemm_small`]: `(a, a_rs, a_cs, kc, b, ldb, c, ldc, (mask0, mask1))`.
type SmallTile = (*const f32, usize, usize, usize, *const f32, usize, *mut f32, usize, (__mmask16, __mmask16));

/// `c[R × ≤32] += a[R × kc] · b[kc × ≤32]`, the columns given by the two lane masks.
#[target_feature(enable = "avx512f")]
unsafe fn small_tile<const R: usize>((a, a_rs, a_cs, kc, b, ldb, c, ldc, (m0, m1)): SmallTile) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for p in 0..kc {
        let b0 = _mm512_maskz_loadu_ps(m0, b.add(p * ldb));
        let b1 = _mm512_maskz_loadu_ps(m1, b.add(p * ldb + 16));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i * a_rs + p * a_cs));
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let cp = c.add(i * ldc);
        _mm512_mask_storeu_ps(cp, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cp), row[0]));
        if m1 != 0 {
            let cp = cp.add(16);
            _mm512_mask_storeu_ps(cp, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cp), row[1]));
        }
    }
}

/// Transposes an 8×8 block: `dst[q * dst_stride + l] = src[l * src_stride + q]` for `l, q < 8`.
///
/// Packing a matrix that lies transposed to its panels (row-major `A`, column-major `B`) one
/// element at a time was bound by scalar stores; this moves 8 rows in 8 loads, 24 shuffles and
/// 8 stores.
#[target_feature(enable = "avx512f")]
unsafe fn transpose8x8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    let r = |l: usize| _mm256_loadu_ps(src.add(l * src_stride));
    let (r0, r1, r2, r3, r4, r5, r6, r7) = (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7));
    // Pairs of lines interleaved: t0 = l0[0] l1[0] l0[1] l1[1] | l0[4] l1[4] l0[5] l1[5], ...
    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
    let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
    let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
    // Quads: s0 = l0..l3 at column 0 | at column 4, s1 = column 1 | 5, ...
    let (s0, s1) = (_mm256_shuffle_ps::<0x44>(t0, t2), _mm256_shuffle_ps::<0xEE>(t0, t2));
    let (s2, s3) = (_mm256_shuffle_ps::<0x44>(t1, t3), _mm256_shuffle_ps::<0xEE>(t1, t3));
    let (s4, s5) = (_mm256_shuffle_ps::<0x44>(t4, t6), _mm256_shuffle_ps::<0xEE>(t4, t6));
    let (s6, s7) = (_mm256_shuffle_ps::<0x44>(t5, t7), _mm256_shuffle_ps::<0xEE>(t5, t7));
    let w = |q: usize, v: __m256| _mm256_storeu_ps(dst.add(q * dst_stride), v);
    w(0, _mm256_permute2f128_ps::<0x20>(s0, s4));
    w(1, _mm256_permute2f128_ps::<0x20>(s1, s5));
    w(2, _mm256_permute2f128_ps::<0x20>(s2, s6));
    w(3, _mm256_permute2f128_ps::<0x20>(s3, s7));
    w(4, _mm256_permute2f128_ps::<0x31>(s0, s4));
    w(5, _mm256_permute2f128_ps::<0x31>(s1, s5));
    w(6, _mm256_permute2f128_ps::<0x31>(s2, s6));
    w(7, _mm256_permute2f128_ps::<0x31>(s3, s7));
}

/// Whether the micro-kernel reads an `nr`-column panel of `b` in place instead of packed: a
/// full panel of a row-major `b` is already `NR` contiguous values per depth, so copying it only
/// costs time (it was a sixth of small recurrent models' training step).
fn reads_b_in_place(b: View, nr: usize) -> bool {
    b.cs == 1 && nr == NR
}

/// Packs `b[pc.., jc..]` (`kc × nc`) into `NR`-column panels, zero-padded, except the panels
/// [`reads_b_in_place`] leaves where they are.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(b: View, (pc, jc): (usize, usize), (kc, nc): (usize, usize), out: &mut [f32]) {
    for (panel, jr) in (0..nc).step_by(NR).enumerate() {
        let nr = NR.min(nc - jr);
        if reads_b_in_place(b, nr) {
            continue;
        }
        let dst = &mut out[panel * kc * NR..(panel + 1) * kc * NR];
        if b.cs == 1 {
            // A partial panel (full ones are read in place): masked copies, zeros beyond `nr`
            // (a `copy_nonoverlapping` of a run-time length was a call to memcpy per row).
            for p in 0..kc {
                let (src, row) = (b.ptr.add((pc + p) * b.rs + jc + jr), dst.as_mut_ptr().add(p * NR));
                let lo = nr.min(16);
                _mm512_storeu_ps(row, _mm512_maskz_loadu_ps(((1u32 << lo) - 1) as __mmask16, src));
                let hi = ((1u32 << (nr - lo)) - 1) as __mmask16;
                _mm512_storeu_ps(row.add(16), _mm512_maskz_loadu_ps(hi, src.add(lo)));
            }
        } else {
            // Walk each source column along k (contiguous when b.rs == 1).
            if nr < NR {
                dst.fill(0.0);
            }
            // Column-major source: 8 columns × 8 depths at a time, transposed into place.
            let (full_j, full_p) = if b.rs == 1 { (nr / 8 * 8, kc / 8 * 8) } else { (0, 0) };
            for j0 in (0..full_j).step_by(8) {
                let src = b.ptr.add(pc + (jc + jr + j0) * b.cs);
                for p in (0..full_p).step_by(8) {
                    transpose8x8(src.add(p), b.cs, dst.as_mut_ptr().add(p * NR + j0), NR);
                }
                for j in j0..j0 + 8 {
                    let src = b.ptr.add(pc * b.rs + (jc + jr + j) * b.cs);
                    for p in full_p..kc {
                        dst[p * NR + j] = *src.add(p * b.rs);
                    }
                }
            }
            for j in full_j..nr {
                let src = b.ptr.add(pc * b.rs + (jc + jr + j) * b.cs);
                for p in 0..kc {
                    dst[p * NR + j] = *src.add(p * b.rs);
                }
            }
        }
    }
}

/// Packs `a[ic.., pc..]` (`mc × kc`) into `MR`-row panels (k-major), zero-padded.
#[target_feature(enable = "avx512f")]
unsafe fn pack_a(a: View, (ic, pc): (usize, usize), (mc, kc): (usize, usize), out: &mut [f32]) {
    for (panel, ir) in (0..mc).step_by(MR).enumerate() {
        let mr = MR.min(mc - ir);
        let dst = &mut out[panel * kc * MR..(panel + 1) * kc * MR];
        if a.rs == 1 {
            // Column-major source: each k step's MR values are contiguous.
            // One masked load and store of MR lanes per depth, zeros beyond `mr`.
            let mask = ((1u32 << mr) - 1) as __mmask16;
            for p in 0..kc {
                let src = a.ptr.add((ic + ir) + (pc + p) * a.cs);
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(p * MR), 0xFF, _mm512_maskz_loadu_ps(mask, src));
            }
        } else {
            // Row-major source with a full panel: 8 rows × 8 depths at a time, transposed.
            let full_p = if a.cs == 1 && mr == MR { kc / 8 * 8 } else { 0 };
            let src = a.ptr.add((ic + ir) * a.rs + pc);
            for p in (0..full_p).step_by(8) {
                transpose8x8(src.add(p), a.rs, dst.as_mut_ptr().add(p * MR), MR);
            }
            for i in 0..MR {
                if i < mr {
                    let src = a.ptr.add((ic + ir + i) * a.rs + pc * a.cs);
                    for p in full_p..kc {
                        dst[p * MR + i] = *src.add(p * a.cs);
                    }
                } else {
                    for p in 0..kc {
                        dst[p * MR + i] = 0.0;
                    }
                }
            }
        }
    }
}

/// `c[mr×nr] += A_panel · B_panel` for one register tile; the `B` panel's depths lie `ldb`
/// apart (`NR` when packed).
#[target_feature(enable = "avx512f")]
unsafe fn kernel(
    kc: usize,
    a: *const f32,
    (b, ldb): (*const f32, usize),
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
) {
    // The tile of `c` is added to once, after the loop: fetch its rows now, so that they are in
    // cache by then (rows `ldc` apart defeat the hardware prefetcher; with a shallow depth the
    // wait for them was a third of the time).
    for i in 0..mr {
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + nr - 1) as *const i8);
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..kc {
        let b0 = _mm512_loadu_ps(b.add(p * ldb));
        let b1 = _mm512_loadu_ps(b.add(p * ldb + 16));
        let ap = a.add(p * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*ap.add(i));
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
    }
    if nr == NR {
        for (i, row) in acc.iter().enumerate().take(mr) {
            let cp = c.add(i * ldc);
            _mm512_storeu_ps(cp, _mm512_add_ps(_mm512_loadu_ps(cp), row[0]));
            _mm512_storeu_ps(cp.add(16), _mm512_add_ps(_mm512_loadu_ps(cp.add(16)), row[1]));
        }
    } else {
        let mut tile = [0.0f32; NR];
        for (i, row) in acc.iter().enumerate().take(mr) {
            _mm512_storeu_ps(tile.as_mut_ptr(), row[0]);
            _mm512_storeu_ps(tile.as_mut_ptr().add(16), row[1]);
            let cp = c.add(i * ldc);
            for (j, v) in tile.iter().enumerate().take(nr) {
                *cp.add(j) += *v;
            }
        }
    }
}

/// [`kernel`] for a tile at most 16 columns wide (the last one of a row whose width is not a
/// multiple of `NR`): the left half of the packed `B` panel, at half the cost.
#[target_feature(enable = "avx512f")]
unsafe fn kernel_half(
    kc: usize,
    a: *const f32,
    (b, ldb): (*const f32, usize),
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
) {
    let mut acc = [_mm512_setzero_ps(); MR];
    for p in 0..kc {
        let b0 = _mm512_loadu_ps(b.add(p * ldb));
        let ap = a.add(p * MR);
        for (i, row) in acc.iter_mut().enumerate() {
            *row = _mm512_fmadd_ps(_mm512_set1_ps(*ap.add(i)), b0, *row);
        }
    }
    let mut tile = [0.0f32; 16];
    for (i, row) in acc.iter().enumerate().take(mr) {
        _mm512_storeu_ps(tile.as_mut_ptr(), *row);
        let cp = c.add(i * ldc);
        for (j, v) in tile.iter().enumerate().take(nr) {
            *cp.add(j) += *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        (ars, acs): (usize, usize),
        b: &[f32],
        (brs, bcs): (usize, usize),
    ) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * ars + p * acs] as f64 * b[p * brs + j * bcs] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn sgemm_matches_naive_for_edge_shapes_and_strides() {
        if !available() {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        let shapes = [
            (1, 1, 1),
            (7, 3, 5),
            (8, 256, 32),
            (9, 257, 33),
            (130, 300, 70),
            (64, 1600, 83),
            (3, 600, 1100),
            (64, 288, 196),
            (17, 64, 48),
        ];
        for &(m, k, n) in &shapes {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 89) as f32 / 89.0 - 0.5).collect();
            for (a_rs, a_cs) in [(k, 1), (1, m)] {
                for (b_rs, b_cs) in [(n, 1), (1, k)] {
                    let expected = naive(m, k, n, &a, (a_rs, a_cs), &b, (b_rs, b_cs));
                    let ldc = n + 3;
                    let mut c = vec![1.0f32; m * ldc];
                    unsafe {
                        sgemm(
                            (m, k, n),
                            View { ptr: a.as_ptr(), rs: a_rs, cs: a_cs },
                            View { ptr: b.as_ptr(), rs: b_rs, cs: b_cs },
                            c.as_mut_ptr(),
                            ldc,
                            true,
                        )
                    };
                    for i in 0..m {
                        for j in 0..ldc {
                            let got = c[i * ldc + j] as f64;
                            let want = if j < n { expected[i * n + j] + 1.0 } else { 1.0 };
                            assert!(
                                (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                                "({m},{k},{n}) c[{i},{j}] = {got}, want {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn small_kernel_gives_the_packed_kernels_bits() {
        if !available() {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        for &(m, k, n) in &[(1, 1, 1), (7, 3, 5), (64, 4, 64), (64, 64, 2), (9, 257, 33), (130, 300, 70), (3, 600, 40)]
        {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 89) as f32 / 89.0 - 0.5).collect();
            for (a_rs, a_cs) in [(k, 1), (1, m)] {
                for (b_rs, b_cs) in [(n, 1), (1, k)] {
                    for accumulate in [true, false] {
                        let ldc = n + 3;
                        let (mut packed, mut small) = (vec![0.25f32; m * ldc], vec![0.25f32; m * ldc]);
                        let (av, bv) = (
                            View { ptr: a.as_ptr(), rs: a_rs, cs: a_cs },
                            View { ptr: b.as_ptr(), rs: b_rs, cs: b_cs },
                        );
                        unsafe {
                            sgemm((m, k, n), av, bv, packed.as_mut_ptr(), ldc, accumulate);
                            sgemm_small((m, k, n), av, bv, small.as_mut_ptr(), ldc, accumulate);
                        }
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&packed), bits(&small), "({m},{k},{n}) strides {a_rs},{a_cs} {b_rs},{b_cs}");
                    }
                }
            }
        }
    }
}
