/* Context switch for AArch64 (AAPCS64).
 *
 * void rt__ctx_switch(void **save_sp, void *new_sp)
 *   Saves x19-x30 and d8-d15 (the callee-saved registers) on the current
 *   stack, stores sp in *save_sp, loads new_sp and restores the same.
 *
 * rt__ctx_entry: where a new context starts: calls x19(x20), never returns.
 */
    .text
    .globl rt__ctx_switch
    .hidden rt__ctx_switch
    .type rt__ctx_switch, %function
    .p2align 4
rt__ctx_switch:
    sub sp, sp, #160
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x2, sp
    str x2, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #160
    ret
    .size rt__ctx_switch, .-rt__ctx_switch

    .globl rt__ctx_entry
    .hidden rt__ctx_entry
    .type rt__ctx_entry, %function
    .p2align 4
rt__ctx_entry:
    mov x0, x20
    blr x19
    brk #0
    .size rt__ctx_entry, .-rt__ctx_entry

    .section .note.GNU-stack,"",%progbits
