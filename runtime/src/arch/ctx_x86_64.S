/* Context switch for x86-64 (System V ABI).
 *
 * void rt__ctx_switch(void **save_sp, void *new_sp)
 *   Saves the callee-saved registers, MXCSR and the x87 control word on the
 *   current stack, stores the stack pointer in *save_sp, loads new_sp and
 *   restores the same from there. Caller-saved registers need no saving: the
 *   compiler assumes a call clobbers them.
 *
 * rt__ctx_entry: where a new context starts (see rt__ctx_init in ctx.h):
 *   calls r12(r13) and never returns.
 */
    .text
    .globl rt__ctx_switch
    .hidden rt__ctx_switch
    .type rt__ctx_switch, @function
    .p2align 4
rt__ctx_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size rt__ctx_switch, .-rt__ctx_switch

    .globl rt__ctx_entry
    .hidden rt__ctx_entry
    .type rt__ctx_entry, @function
    .p2align 4
rt__ctx_entry:
    .cfi_startproc
    .cfi_undefined rip
    movq %r13, %rdi
    callq *%r12
    ud2
    .cfi_endproc
    .size rt__ctx_entry, .-rt__ctx_entry

    .section .note.GNU-stack,"",@progbits
