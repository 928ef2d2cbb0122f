#pragma once

// Internal to src/mime: the one header that brings GMime in. Include it from
// .cpp files of this folder only, never from a header other modules see.

#include <gmime/gmime.h>

#include <memory>

namespace mb::mime::detail {

/// Initialises GMime once per process (g_mime_init is not safe to race);
/// every entry point of this module that touches GMime calls it first.
/// Thread-safe. GMime is never shut down: it stays usable until exit.
void ensureGMime();

/// Owners for GMime/GLib objects, so that every return path lets go of them.
struct GObjectUnref {
  void operator()(gpointer p) const {
    if (p != nullptr) g_object_unref(p);
  }
};
template <typename T>
using GObjectPtr = std::unique_ptr<T, GObjectUnref>;

struct GFree {
  void operator()(gpointer p) const { g_free(p); }
};
using GCharPtr = std::unique_ptr<char, GFree>;

struct FormatOptionsFree {
  void operator()(GMimeFormatOptions* p) const {
    if (p != nullptr) g_mime_format_options_free(p);
  }
};
using FormatOptionsPtr = std::unique_ptr<GMimeFormatOptions, FormatOptionsFree>;

}  // namespace mb::mime::detail
