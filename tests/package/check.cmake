# Builds a small user project against the library, as a user would: MODE=find_package installs
# the library into a prefix first; MODE=add_subdirectory uses the source tree directly.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(consumer ${CMAKE_CURRENT_LIST_DIR}/consumer)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed: ${ARGN}\n${out}")
  endif()
endfunction()

if(MODE STREQUAL "find_package")
  run(${CMAKE_COMMAND} -S ${SOURCE} -B ${WORK}/lib -DEBPF_BUILD_TESTS=OFF -DEBPF_BUILD_BENCH=OFF
      -DEBPF_BUILD_AGENT=OFF
      -DCMAKE_INSTALL_PREFIX=${WORK}/prefix)
  run(${CMAKE_COMMAND} --install ${WORK}/lib)
  run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK}/app -DCMAKE_PREFIX_PATH=${WORK}/prefix
      -DEBPF_USE=find_package)
else()
  run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK}/app -DEBPF_USE=add_subdirectory
      -DEBPF_SOURCE=${SOURCE})
endif()
run(${CMAKE_COMMAND} --build ${WORK}/app)
run(${WORK}/app/consumer)
