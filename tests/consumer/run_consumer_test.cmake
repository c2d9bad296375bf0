cmake_minimum_required(VERSION 3.22)
# The consumer tests (cmake -P):
#   MODE=install       install the build into a scratch prefix; build tests/consumer/install
#                      against it (find_package with and without COMPONENTS), then against the
#                      build tree (export()), then with pkg-config only; run every program.
#   MODE=subdirectory  build tests/consumer/subdirectory, which takes asched through
#                      add_subdirectory as shared libraries, with libpq hidden from CMake; run
#                      its programs and check the SONAME.
file(REMOVE_RECURSE "${WORK_DIR}")

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

function(run_consumer exe)
  run("running ${exe}" "${exe}")
  message("${exe}: ${out}")
  if(NOT out MATCHES "consumer ok: 42")
    message(FATAL_ERROR "${exe} did not print its result")
  endif()
endfunction()

string(REPLACE "," ";" COMPONENTS "${COMPONENTS}")

if(MODE STREQUAL "install")
  set(prefix "${WORK_DIR}/prefix")
  run("install" ${CMAKE_COMMAND} --install "${BINARY_DIR}" --prefix "${prefix}")
  foreach(f share/doc/asched/LICENSE include/asched/version.hpp include/asched/config.hpp)
    if(NOT EXISTS "${prefix}/${f}")
      message(FATAL_ERROR "the install lacks ${f}")
    endif()
  endforeach()
  foreach(c IN LISTS COMPONENTS)
    file(GLOB_RECURSE pc "${prefix}/*/asched-${c}.pc")
    if(NOT pc)
      message(FATAL_ERROR "the install lacks asched-${c}.pc")
    endif()
  endforeach()

  foreach(how prefix build-tree)
    if(how STREQUAL "prefix")
      set(where "-DCMAKE_PREFIX_PATH=${prefix}")
    else()
      set(where "-Dasched_DIR=${BINARY_DIR}")
    endif()
    set(build "${WORK_DIR}/${how}")
    run("configuring the consumer (${how})" ${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer/install"
        -B "${build}" -G "${GENERATOR}" "${where}" "-DCOMPONENTS=${COMPONENTS}")
    run("building the consumer (${how})" ${CMAKE_COMMAND} --build "${build}")
    run_consumer("${build}/core_consumer")
    if(COMPONENTS)
      run_consumer("${build}/component_consumer")
    endif()
  endforeach()

  # pkg-config alone, as a Makefile user would: the core and SQLite.
  if("sqlite" IN_LIST COMPONENTS)
    file(GLOB_RECURSE pc "${prefix}/*/asched.pc")
    get_filename_component(pc_dir "${pc}" DIRECTORY)
    run("pkg-config" ${CMAKE_COMMAND} -E env "PKG_CONFIG_PATH=${pc_dir}"
        pkg-config --cflags --libs asched asched-sqlite)
    string(STRIP "${out}" flags)
    separate_arguments(flags UNIX_COMMAND "${flags}")
    run("compiling with pkg-config's flags" ${CXX} -DCONSUMER_SQLITE "${SOURCE_DIR}/tests/consumer/consumer.cpp"
        -o "${WORK_DIR}/pkg_config_consumer" ${flags})
    run_consumer("${WORK_DIR}/pkg_config_consumer")
  endif()
elseif(MODE STREQUAL "subdirectory")
  set(build "${WORK_DIR}/build")
  run("configuring the subdirectory consumer" ${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer/subdirectory"
      -B "${build}" -G "${GENERATOR}" "-DASCHED_SOURCE_DIR=${SOURCE_DIR}" -DBUILD_SHARED_LIBS=ON
      -DCMAKE_DISABLE_FIND_PACKAGE_PostgreSQL=ON)
  message("${out}")
  if(NOT out MATCHES "asched::postgres\\): OFF, libpq")
    message(FATAL_ERROR "the configure output does not say that libpq is missing")
  endif()
  run("building the subdirectory consumer" ${CMAKE_COMMAND} --build "${build}" --target core_consumer sqlite_consumer)
  run_consumer("${build}/core_consumer")
  run_consumer("${build}/sqlite_consumer")
  file(GLOB_RECURSE libs "${build}/asched/libasched.so.*")
  if(NOT libs)
    message(FATAL_ERROR "BUILD_SHARED_LIBS=ON made no libasched.so")
  endif()
  run("readelf" readelf -d "${build}/asched/libasched.so")
  if(NOT out MATCHES "SONAME[^\n]*libasched\\.so\\.0\\]")
    message(FATAL_ERROR "libasched.so has no SONAME libasched.so.0:\n${out}")
  endif()
else()
  message(FATAL_ERROR "MODE must be install or subdirectory")
endif()
