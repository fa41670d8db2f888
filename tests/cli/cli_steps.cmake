# Shared by the `cmake -P` drivers of the command-line tests (run_cli_compare.cmake, run_cli_reproduce.cmake):
# a fresh output folder, and one qroar command line ('|'-separated arguments) that must succeed.

# Removes `dir` with everything in it and creates it empty.
function(qroar_fresh_dir dir)
  file(REMOVE_RECURSE "${dir}")
  file(MAKE_DIRECTORY "${dir}")
endfunction()

# Runs `line` and stores its stdout in `out_var`; a non-zero exit fails the test, naming `what`, the command and
# both streams.
function(qroar_run_step what line out_var)
  string(REPLACE "|" ";" cmd "${line}")
  execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "${what} failed (exit ${rc}): ${cmd}\nstdout:\n${out}\nstderr:\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()
