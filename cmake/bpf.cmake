# Builds BPF C programs into objects with clang -target bpf (clang-14 on Debian bookworm).
find_program(EBPF_CLANG NAMES clang-14 clang REQUIRED)
execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-multiarch
                OUTPUT_VARIABLE EBPF_MULTIARCH OUTPUT_STRIP_TRAILING_WHITESPACE)

# add_bpf_object(<target> <source.bpf.c>): builds <target>.bpf.o in the current binary dir and
# sets EBPF_OBJECT_<target> to its path.
function(add_bpf_object target src)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${target}.bpf.o)
  file(GLOB headers ${PROJECT_SOURCE_DIR}/bpf/include/*.h)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${EBPF_CLANG} -target bpf -O2 -g -mcpu=v3 -Wall -Werror
            -I${PROJECT_SOURCE_DIR}/bpf/include -I/usr/include/${EBPF_MULTIARCH}
            -c ${CMAKE_CURRENT_SOURCE_DIR}/${src} -o ${out}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${src} ${headers}
    COMMENT "BPF ${src}"
    VERBATIM)
  add_custom_target(${target}_bpf ALL DEPENDS ${out})
  set(EBPF_OBJECT_${target} ${out} PARENT_SCOPE)
endfunction()
