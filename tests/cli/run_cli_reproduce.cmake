# A search's numbers reproduce in a fresh process from the model it leads to: runs `qroar search --json -o S`,
# then `qroar apply --scales S -o P`, then `qroar eval --model P --json` on the search's own dev windows, and
# requires the eval's mean NLL to equal the search's final dev objective digit for digit (JSON prints the
# shortest round-trip decimal, so equal text means equal doubles; the search sums NLLs in evaluate_perplexity's
# order). The search must have moved (final < baseline), or the check would be vacuous.
#   -DSEARCH="qroar|search|...|--json"  -DAPPLY="qroar|apply|..."  -DEVAL="qroar|eval|...|--json"  -DCLEAN=dir
include(${CMAKE_CURRENT_LIST_DIR}/cli_steps.cmake)
if(DEFINED CLEAN)
  qroar_fresh_dir("${CLEAN}")
endif()
qroar_run_step("search" "${SEARCH}" search_out)
if(NOT search_out MATCHES "\"skipped\":false")
  message(FATAL_ERROR "the search was skipped:\n${search_out}")
endif()
if(NOT search_out MATCHES "\"baseline_objective\":([-0-9.eE+]+),\"final_objective\":([-0-9.eE+]+)")
  message(FATAL_ERROR "no baseline_objective / final_objective in the search output:\n${search_out}")
endif()
set(baseline "${CMAKE_MATCH_1}")
set(final "${CMAKE_MATCH_2}")
if(baseline STREQUAL final)
  message(FATAL_ERROR "the search kept identity scales (dev objective ${baseline}): nothing to reproduce")
endif()
qroar_run_step("apply" "${APPLY}" _)
qroar_run_step("eval" "${EVAL}" eval_out)
if(NOT eval_out MATCHES "\"mean_nll\":([-0-9.eE+]+),")
  message(FATAL_ERROR "no mean_nll in the eval output:\n${eval_out}")
endif()
set(reproduced "${CMAKE_MATCH_1}")
if(NOT reproduced STREQUAL final)
  message(FATAL_ERROR "the written model does not reproduce the search: search final dev NLL ${final}, "
                      "eval of the written model ${reproduced} (baseline ${baseline})")
endif()
message(STATUS "reproduced: dev NLL ${baseline} -> ${final}, eval of the written model ${reproduced}")
