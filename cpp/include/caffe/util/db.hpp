// caffe-tch's C++ interface: Caffe's caffe/util/db.hpp. A dataset (LMDB or
// LevelDB) opened to read through cursors, or made new or added to through
// transactions, on caffe-tch's readers and writer:
//
//   scoped_ptr<db::DB> db(db::GetDB("lmdb"));
//   db->Open("train_lmdb", db::NEW);
//   scoped_ptr<db::Transaction> txn(db->NewTransaction());
//   txn->Put(key, serialized_datum);
//   txn->Commit();
//
// What differs from BVLC Caffe: a new DB (db::NEW) is written under a
// temporary name and takes its own when closed (Close, or the DB's
// destructor), so a program that dies leaves none half-written; db::WRITE
// adds to an existing DB in place, each Commit one transaction of its own
// (a missing LevelDB is made as with db::NEW; a missing LMDB is an error,
// as in Caffe); a cursor reads the DB as it was when the cursor was made;
// errors are exceptions with caffe-tch's one-line message.
#ifndef CAFFE_TCH_UTIL_DB_HPP_
#define CAFFE_TCH_UTIL_DB_HPP_

#include <cstddef>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "caffe/caffe.hpp"

extern "C" {
struct CaffeTchDb;
struct CaffeTchCursor;
CaffeTchDb* caffe_tch_db_open(const char* backend, const char* path, int mode);
int caffe_tch_db_commit(CaffeTchDb* db, const char* const* keys, const size_t* key_lens, const char* const* values,
                        const size_t* value_lens, size_t n);
int caffe_tch_db_close(CaffeTchDb* db);
void caffe_tch_db_free(CaffeTchDb* db);
CaffeTchCursor* caffe_tch_db_cursor(CaffeTchDb* db);
int caffe_tch_cursor_move(CaffeTchCursor* cursor, int first);
int caffe_tch_cursor_valid(CaffeTchCursor* cursor);
const char* caffe_tch_cursor_record(CaffeTchCursor* cursor, int value, size_t* len);
void caffe_tch_cursor_free(CaffeTchCursor* cursor);
}

namespace caffe {

// DataParameter's DB enum (db::GetDB(DataParameter::LMDB)) is caffe/proto/messages.hpp's.

namespace db {

enum Mode { READ, WRITE, NEW };

// The records of a DB in key order, from the first.
class Cursor {
 public:
  ~Cursor() { caffe_tch_cursor_free(c_); }
  void SeekToFirst() { internal::check(caffe_tch_cursor_move(c_, 1) == 0); }
  void Next() { internal::check(caffe_tch_cursor_move(c_, 0) == 0); }
  std::string key() const { return record(0); }
  std::string value() const { return record(1); }
  bool valid() const { return caffe_tch_cursor_valid(c_) != 0; }

 private:
  friend class DB;
  explicit Cursor(CaffeTchCursor* c) : c_(c) {}
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  std::string record(int value) const {
    size_t len = 0;
    const char* p = caffe_tch_cursor_record(c_, value, &len);
    if (p == nullptr) throw std::runtime_error("db::Cursor: not on a record (check valid())");
    return std::string(p, len);
  }
  CaffeTchCursor* c_;
};

// Records put since the last commit, written together by Commit.
class Transaction {
 public:
  void Put(const std::string& key, const std::string& value) {
    keys_.push_back(key);
    values_.push_back(value);
  }
  void Commit() {
    std::vector<const char*> keys, values;
    std::vector<size_t> key_lens, value_lens;
    for (size_t i = 0; i < keys_.size(); ++i) {
      keys.push_back(keys_[i].data());
      key_lens.push_back(keys_[i].size());
      values.push_back(values_[i].data());
      value_lens.push_back(values_[i].size());
    }
    int rc = caffe_tch_db_commit(db_, keys.data(), key_lens.data(), values.data(), value_lens.data(), keys.size());
    keys_.clear();
    values_.clear();
    internal::check(rc == 0);
  }

 private:
  friend class DB;
  explicit Transaction(CaffeTchDb* db) : db_(db) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  CaffeTchDb* db_;
  std::vector<std::string> keys_, values_;
};

class DB {
 public:
  explicit DB(const std::string& backend) : backend_(backend), db_(nullptr) {}
  // Closes the DB; an error closing it (a new DB that could not take its
  // name) is printed, since a destructor cannot throw.
  virtual ~DB() {
    if (db_ == nullptr) return;
    if (caffe_tch_db_close(db_) != 0) std::cerr << "E db.hpp] " << caffe_tch_last_error() << std::endl;
    caffe_tch_db_free(db_);
  }
  void Open(const std::string& source, Mode mode) {
    Close();
    db_ = caffe_tch_db_open(backend_.c_str(), source.c_str(), static_cast<int>(mode));
    internal::check(db_ != nullptr);
  }
  void Close() {
    if (db_ == nullptr) return;
    int rc = caffe_tch_db_close(db_);
    caffe_tch_db_free(db_);
    db_ = nullptr;
    internal::check(rc == 0);
  }
  Cursor* NewCursor() {
    CaffeTchCursor* c = caffe_tch_db_cursor(open());
    internal::check(c != nullptr);
    return new Cursor(c);
  }
  Transaction* NewTransaction() { return new Transaction(open()); }

 private:
  DB(const DB&) = delete;
  DB& operator=(const DB&) = delete;
  CaffeTchDb* open() {
    if (db_ == nullptr) throw std::runtime_error("db::DB: not open (call Open first)");
    return db_;
  }
  std::string backend_;
  CaffeTchDb* db_;
};

class LMDB : public DB {
 public:
  LMDB() : DB("lmdb") {}
};
class LevelDB : public DB {
 public:
  LevelDB() : DB("leveldb") {}
};

inline DB* GetDB(const std::string& backend) {
  if (backend == "lmdb") return new LMDB();
  if (backend == "leveldb") return new LevelDB();
  throw std::runtime_error("Unknown database backend '" + backend + "' (known: lmdb, leveldb)");
}
inline DB* GetDB(DataParameter::DB backend) {
  if (backend == DataParameter::LMDB) return new LMDB();
  if (backend == DataParameter::LEVELDB) return new LevelDB();
  throw std::runtime_error("Unknown database backend " + std::to_string(static_cast<int>(backend)));
}

}  // namespace db
}  // namespace caffe

#endif  // CAFFE_TCH_UTIL_DB_HPP_
