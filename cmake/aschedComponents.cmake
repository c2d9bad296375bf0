# Helpers for asched's libraries: the optional backends and the properties every library shares.

# ASCHED_WITH_<NAME>: ON by default when <found_var> is true. Says in the configure output
# what is built and, for what is not, which package would enable it.
function(asched_backend_option name what found_var needs)
  if(${found_var})
    set(default ON)
  else()
    set(default OFF)
  endif()
  option(ASCHED_WITH_${name} "Build the ${what}" ${default})
  if(ASCHED_WITH_${name} AND NOT ${found_var})
    message(FATAL_ERROR "ASCHED_WITH_${name}=ON, but ${needs} was not found: install it, "
                        "or configure with -DASCHED_WITH_${name}=OFF")
  endif()
  if(ASCHED_WITH_${name})
    message(STATUS "asched: ${what}: ON")
  elseif(${found_var})
    message(STATUS "asched: ${what}: OFF (ASCHED_WITH_${name}=OFF)")
  else()
    message(STATUS "asched: ${what}: OFF, ${needs} not found")
  endif()
endfunction()

# One of asched's libraries: alias asched::<component>, file libasched[-<component>], a SONAME,
# and our warnings and sanitizers as private options (never part of the usage requirements).
function(asched_library target component)
  if(component STREQUAL "asched")
    set(output asched)
  else()
    set(output asched-${component})
  endif()
  add_library(asched::${component} ALIAS ${target})
  set_target_properties(${target} PROPERTIES
    EXPORT_NAME ${component}
    OUTPUT_NAME ${output}
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR}
    POSITION_INDEPENDENT_CODE ON)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_compile_options(${target} PRIVATE ${ASCHED_WARNINGS})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  if(ASCHED_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${ASCHED_SANITIZE} -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=${ASCHED_SANITIZE})
  endif()
  if(NOT component STREQUAL "asched")
    set_property(GLOBAL APPEND PROPERTY ASCHED_BUILT_COMPONENTS ${component})
  endif()
endfunction()
