#!/usr/bin/env bash
# bench/sass_stats.py on a hand-written ptxas report and SASS listing: it reads each kernel's
# registers, stack and spills, finds the smallest loop that holds every HMMA (not the outer loop
# around it), counts its instructions by kind, and refuses a file with no SASS functions.
set -euo pipefail
# shellcheck source=tests/shell_test_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/shell_test_lib.sh"
name='_ZN2rf4cuda15attention_tiles17mma_forward_tilesILi64ELb0ELb1EEEvNS_20ChunkAttentionParamsE'
cat > "$tmp/ptxas.txt" <<EOT
ptxas info    : Compiling entry function '$name' for 'sm_90'
ptxas info    : Function properties for $name
    16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 160 registers, used 1 barriers, 16 bytes cumulative stack size, 19968 bytes smem
EOT
# An outer loop 0x0010..0x00a0 around an inner loop 0x0020..0x0080 that holds both HMMAs.
cat > "$tmp/k.sass" <<EOT
		Function : $name
        /*0000*/                   MOV R1, c[0x0][0x28] ;      /* 0x00000a0000017a02 */
        /*0010*/                   LDS R2, [R3] ;              /* 0x0000000003027984 */
        /*0020*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;
        /*0030*/                   FFMA R5, R6, R7, R5 ;
        /*0040*/                   FFMA R5, R6, R7, R5 ;
        /*0050*/              @P0  F2I.TRUNC.NTZ R9, R9 ;
        /*0060*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;
        /*0070*/                   ISETP.NE.AND P0, PT, R1, RZ, PT ;
        /*0080*/              @P0  BRA 0x20 ;
        /*0090*/                   IMAD R1, R1, 0x2, RZ ;
        /*00a0*/              @P1  BRA 0x10 ;
        /*00b0*/                   EXIT ;
EOT
out="$(python3 "$root/bench/sass_stats.py" "$tmp/ptxas.txt" "$tmp/k.sass")"
echo "$out"
row="$(grep '^mma_forward_tiles<64, plain, dropout>' <<< "$out")" || fail "no row for the kernel"
# kernel | regs | stack | spill | smem | instructions | loop | HMMA FFMA FADD FMUL IMAD ISETP LOP3 F2I ..
[[ "$row" == "mma_forward_tiles<64, plain, dropout> | 160 | 16 | 8 | 19968 | 12 | 7 | 2 | 2 | 0 | 0 | 0 | 1 | 0 | 1 |"* ]] ||
  fail "unexpected row: $row"
if python3 "$root/bench/sass_stats.py" "$tmp/ptxas.txt" "$tmp/ptxas.txt" 2> "$tmp/err"; then
  fail "a file without SASS was accepted"
fi
grep -q "no SASS functions" "$tmp/err" || fail "no clear error for a file without SASS"
echo "sass stats: ok"
